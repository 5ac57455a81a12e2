"""Messages against the testbed: a tag that is not in the registry lists the closest tags and the
newest ones, naming the flag it came from; `verify` says which HEAD it compared against."""

from __future__ import annotations

import hashlib
import json
import ssl
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.integration.conftest import Cli

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_tiny_image(env: dict[str, str], repo: str, tags: list[str]) -> None:
    """A config-only image (no layers) pushed straight through the registry's V2 API: quick, and
    enough for a tag to exist with a creation time."""
    ctx = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
    auth = (env["GHTB_REGISTRY_USER"], env["GHTB_REGISTRY_PASSWORD"])
    base = f"https://{env['ECR_REGISTRY']}/v2/{repo}"
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "created": created, "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    with httpx.Client(verify=ctx, timeout=20, auth=auth) as client:
        start = client.post(f"{base}/blobs/uploads/")
        assert start.status_code == 202, start.text
        upload = httpx.URL(str(start.url)).join(start.headers["Location"])
        done = client.put(str(upload.copy_merge_params({"digest": digest})), content=config)
        assert done.status_code == 201, done.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest,
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        for tag in tags:
            put = client.put(f"{base}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
            assert put.status_code == 201, put.text


def test_a_missing_tag_lists_the_closest_and_the_newest(
    cli_factory: Callable[..., Cli], testbed_env: dict[str, str], hosts: list[str]
) -> None:
    # A repository of its own: the shared one gathers every run's tags (more than the dry-run
    # listing reads creation times for), and the newest there would be whatever ran last.
    repo = f"input-msg-{uuid.uuid4().hex[:8]}"
    push_tiny_image(testbed_env, repo, ["release-1"])
    push_tiny_image(testbed_env, repo, ["release-2", "other"])
    cli = cli_factory(EC2_HOST=hosts[0], ECR_REPOSITORY=repo)

    rolled = cli("rollback", "--dry-run", "--to", "relaese-2", timeout=120)
    assert rolled.returncode == 2, rolled.stderr
    text = " ".join(rolled.stderr.split())
    assert f"--to 'relaese-2': no such tag in {testbed_env['ECR_REGISTRY']}/{repo}" in text
    closest = text.split("closest:", 1)[1].split(";")[0]
    assert "release-2" in closest and "release-1" in closest
    newest = text.split("newest:", 1)[1].split(";")[0]
    assert newest.index("release-2") < newest.index("release-1")  # pushed later, listed first
    assert "3 tags in all" in text
    assert "--tag" not in text and "Traceback" not in rolled.stderr

    deployed = cli("deploy", "--deploy-only", "--dry-run", "--tag", "release-3", timeout=120)
    assert deployed.returncode == 2, deployed.stderr
    text = " ".join(deployed.stderr.split())
    assert "--tag 'release-3': no such tag" in text and "release-2" in text


def test_verify_says_which_head_it_compared_and_where_from(
    cli_factory: Callable[..., Cli], app_repo: Path, tmp_path: Path, hosts: list[str]
) -> None:
    cli = cli_factory(EC2_HOST=hosts[0])
    got = cli("--json", "verify", timeout=120)
    doc = json.loads(got.stdout)
    assert doc["expected_from"].startswith("HEAD of ") and str(app_repo) in doc["expected_from"]

    elsewhere = tmp_path / "not-the-app"
    elsewhere.mkdir()
    import subprocess

    subprocess.run(["git", "init", "-q", str(elsewhere)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(elsewhere),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    other = type(cli)(cwd=elsewhere, env=cli.env)
    mismatch = other("verify", timeout=120)
    text = " ".join((mismatch.stdout + mismatch.stderr).split())
    assert f"HEAD of {elsewhere}" in text
    assert "no Dockerfile" in text  # the hint: this is not the app's checkout


def test_a_missing_tag_in_a_large_repository_dates_only_the_closest(
    cli_factory: Callable[..., Cli], testbed_env: dict[str, str], hosts: list[str]
) -> None:
    # More tags than the message reads dates for on a registry without ECR's DescribeImages (the
    # testbed's moto has none of these images): the closest tags come dated, "newest" is left out
    # rather than guessed, and the count stays.
    repo = f"input-many-{uuid.uuid4().hex[:8]}"
    push_tiny_image(testbed_env, repo, [f"build-{n}" for n in range(30)])
    cli = cli_factory(EC2_HOST=hosts[0], ECR_REPOSITORY=repo)
    rolled = cli("rollback", "--dry-run", "--to", "biuld-17", timeout=120)
    assert rolled.returncode == 2, rolled.stderr
    text = " ".join(rolled.stderr.split())
    closest = text.split("closest:", 1)[1].split(";")[0]
    assert "build-17 (" in closest, text  # dated: the image's creation time
    assert "newest:" not in text
    assert "30 tags in all" in text and "Traceback" not in rolled.stderr
