"""`ghdeploy build`, `push` and `deploy --push-only` against the testbed's Docker engine and registry."""

from __future__ import annotations

import json
import ssl
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.conftest import Cli, commit, git

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def registry_digest(env: dict[str, str], repo: str, tag: str) -> str | None:
    ctx = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    with httpx.Client(verify=ctx, timeout=10) as client:
        r = client.head(
            f"https://{env['ECR_REGISTRY']}/v2/{repo}/manifests/{tag}",
            headers={"Accept": MANIFEST_V2},
            auth=("AWS", "123456789012-auth-token"),
        )
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def image_env(ref: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Env}}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in json.loads(out))


def test_build_then_push_leaves_both_tags_with_one_digest(
    cli_factory: Callable[..., Cli], app_repo: Path, testbed_env: dict[str, str]
) -> None:
    sha = commit(app_repo, "build-push test")
    short = git(app_repo, "rev-parse", "--short", "HEAD")
    cli = cli_factory()
    built = cli("build")
    assert built.returncode == 0, built.stderr
    ref = f"{testbed_env['ECR_REGISTRY']}/ghosthands:{short}"
    assert ref in built.stdout
    env = image_env(ref)
    assert env["COMMIT_SHA"] == sha
    assert env["IMAGE_TAG"] == short
    assert len(env["BUILD_TIME"]) == 20 and env["BUILD_TIME"].endswith("Z") and env["BUILD_TIME"][10] == "T"

    pushed = cli("--json", "push")
    assert pushed.returncode == 0, pushed.stderr
    doc = json.loads(pushed.stdout)
    assert doc["version"] == 1 and doc["ok"] is True and doc["tag"] == short
    digest = registry_digest(testbed_env, "ghosthands", short)
    assert digest is not None and digest == doc["digest"]
    assert registry_digest(testbed_env, "ghosthands", "latest") == digest
    # The ECR token must not be left behind in the operator's docker config.
    config = Path(cli.env["HOME"]) / ".docker" / "config.json"
    assert (
        not config.exists()
        or "auths" not in json.loads(config.read_text())
        or not json.loads(config.read_text())["auths"]
    )
    assert "123456789012-auth-token" not in pushed.stderr + pushed.stdout


def test_deploy_push_only_builds_and_pushes(
    cli_factory: Callable[..., Cli], app_repo: Path, testbed_env: dict[str, str]
) -> None:
    sha = commit(app_repo, "push-only test")
    cli = cli_factory()
    proc = cli("deploy", "--push-only", "--tag", "pushonly-1")
    assert proc.returncode == 0, proc.stderr
    digest = registry_digest(testbed_env, "ghosthands", "pushonly-1")
    assert digest is not None
    assert registry_digest(testbed_env, "ghosthands", "latest") == digest
    assert image_env(f"{testbed_env['ECR_REGISTRY']}/ghosthands:pushonly-1")["COMMIT_SHA"] == sha
    # Progress went to stderr, the result to stdout.
    assert "pushed" in proc.stdout


def test_dirty_tree_is_refused_unless_allowed(
    cli_factory: Callable[..., Cli], app_repo: Path, testbed_env: dict[str, str]
) -> None:
    (app_repo / "VERSION").write_text("uncommitted\n")
    cli = cli_factory()
    proc = cli("build")
    assert proc.returncode == 2
    assert "uncommitted" in proc.stderr and "--allow-dirty" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = cli("build", "--allow-dirty")
    assert ok.returncode == 0, ok.stderr
    short = git(app_repo, "rev-parse", "--short", "HEAD")
    assert f"ghosthands:{short}-dirty" in ok.stdout


def test_bad_tag_and_missing_engine_exit_2(cli_factory: Callable[..., Cli]) -> None:
    cli = cli_factory()
    bad = cli("build", "--tag=bad/tag")
    assert bad.returncode == 2 and "not a valid docker tag" in bad.stderr and "Traceback" not in bad.stderr
    no_engine = cli("build", extra_env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert no_engine.returncode == 2, no_engine.stderr
    assert "Docker engine" in no_engine.stderr and "Traceback" not in no_engine.stderr


def test_push_errors_are_one_line_with_a_hint(cli_factory: Callable[..., Cli], app_repo: Path) -> None:
    cli = cli_factory()
    tag = f"t-{uuid.uuid4().hex[:10]}"  # images from earlier runs stay in the engine: use a fresh tag
    missing_image = cli("push", "--tag", tag)
    assert missing_image.returncode == 2
    assert "no local image" in missing_image.stderr and "ghdeploy build" in missing_image.stderr

    cli_other = cli_factory(ECR_REPOSITORY="not-a-repo")
    assert cli_other("build", "--tag", tag).returncode == 0
    no_repo = cli_other("push", "--tag", tag)
    assert no_repo.returncode == 1
    assert "does not exist" in no_repo.stderr and "hint:" in no_repo.stderr

    assert cli("build", "--tag", tag).returncode == 0
    no_creds = cli(
        "push",
        "--tag",
        tag,
        extra_env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    )
    assert no_creds.returncode == 2  # a preflight failure: nothing was touched
    assert "no AWS credentials" in no_creds.stderr and "Traceback" not in no_creds.stderr
