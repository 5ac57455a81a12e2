"""Deploy, rollback, status and verify over real SSH against a testbed host (h1)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Cli,
    api_image_id,
    busy,
    commit,
    containers,
    git,
    host_docker,
    host_http,
    make_broken,
)

H1 = "root@10.77.1.2"
STATE = Path("/var/lib/ghtb/h1/state/events.log")
H1_OPT = Path("/var/lib/ghtb/h1/opt")
H1_ROOT = Path("/var/lib/ghtb/h1/root")


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")


def version(host_ns: str) -> dict:
    return json.loads(host_http(host_ns, "/health/version"))


def test_deploy_drains_a_busy_worker_then_verifies(h1: Cli, app_repo: Path) -> None:
    first = commit(app_repo, "v1")
    proc = h1("deploy")
    assert proc.returncode == 0, proc.stderr
    assert version("h1")["commit_sha"] == first

    second = commit(app_repo, "v2")
    # The job must outlast the build, push and preflight before the drain (seconds on a busy machine).
    busy("h1", 15)
    STATE.write_text("")
    doc = h1.json("deploy")
    host = doc["deploy"]["hosts"][0]
    assert host["result"] == "succeeded"
    assert any(re.match(r"worker: drained in \d+\.\d+s", n) for n in host["notes"]), host["notes"]
    assert host["phases"]["drain"] >= 1.0
    events = STATE.read_text()
    assert "drain " in events and events.index("drain ") < events.index("sigterm ")
    running = version("h1")
    assert running["commit_sha"] == second
    assert running["image_tag"] == git(app_repo, "rev-parse", "--short", "HEAD")
    assert doc["verify"][0]["ok"] is True
    assert h1("verify").returncode == 0

    status = h1.json("status")
    api = next(s for s in status["hosts"][0]["services"] if s["service"] == "api")
    assert api["tag"] == running["image_tag"] and api["digest"] == doc["deploy"]["target"]["digest"]
    assert status["hosts"][0]["worker"]["status"] == "idle"
    assert status["hosts"][0]["last_deploy"]["result"] == "succeeded"
    # The host never had a registry login of its own, and none is left behind.
    assert not (H1_ROOT / ".docker" / "config.json").exists()
    assert not list((H1_OPT / ".ghdeploy").glob("docker-config-*"))


def test_worker_without_status_endpoint_gets_sigterm(h1: Cli, app_repo: Path) -> None:
    old = (app_repo / "Dockerfile").read_text().replace("ARG NO_WORKER_STATUS=0", "ARG NO_WORKER_STATUS=1")
    commit(app_repo, "old worker", {"Dockerfile": old})
    assert h1("deploy").returncode == 0
    STATE.write_text("")
    fixed = old.replace("ARG NO_WORKER_STATUS=1", "ARG NO_WORKER_STATUS=0")
    new = commit(app_repo, "new worker", {"Dockerfile": fixed})
    doc = h1.json("deploy")
    host = doc["deploy"]["hosts"][0]
    assert host["result"] == "succeeded"
    assert any("no worker status endpoint, SIGTERM fallback" in n for n in host["notes"]), host["notes"]
    assert "sigterm" in STATE.read_text()
    assert version("h1")["commit_sha"] == new


def test_broken_image_rolls_back_to_the_exact_previous_image(h1: Cli, app_repo: Path) -> None:
    good = commit(app_repo, "good")
    assert h1("deploy").returncode == 0
    before = api_image_id("h1")
    make_broken(app_repo)
    proc = h1("deploy")
    assert proc.returncode == 1, proc.stderr
    assert "rolled back" in proc.stdout
    assert "/health did not answer 200" in proc.stdout + proc.stderr
    assert api_image_id("h1") == before
    assert host_http("h1", "/health").strip() != ""
    assert version("h1")["commit_sha"] == good
    assert h1("verify", "--expect", good).returncode == 0
    mismatch = h1("verify")
    assert mismatch.returncode == 1 and good[:12] in mismatch.stdout
    history = h1.json("history")["hosts"][0]["records"]
    assert [r["result"] for r in history] == ["succeeded", "rolled back"]
    assert history[-1]["from"]["image_id"] == before


def test_refusals_before_anything_changes(h1: Cli, app_repo: Path, tmp_path: Path) -> None:
    commit(app_repo, "base")
    assert h1("deploy").returncode == 0
    before = containers("h1")

    missing = h1("deploy", "--deploy-only", "--tag", "no-such-tag-123")
    assert missing.returncode == 2 and "no such tag" in missing.stderr and "Traceback" not in missing.stderr

    empty_known = tmp_path / "known_hosts"
    empty_known.write_text("")
    unknown_key = h1("deploy", "--deploy-only", extra_env={"SSH_KNOWN_HOSTS": str(empty_known)})
    assert unknown_key.returncode == 2
    assert "host key" in unknown_key.stderr and "--accept-new-host-key" in unknown_key.stderr
    assert empty_known.read_text() == ""

    unreachable = h1("deploy", "--deploy-only", extra_env={"EC2_HOST": f"{H1},root@10.77.250.2"})
    assert unreachable.returncode == 2
    assert "10.77.250.2" in unreachable.stderr and "no host was touched" in unreachable.stderr

    assert containers("h1") == before

    accepted = h1("status", "--accept-new-host-key", extra_env={"SSH_KNOWN_HOSTS": str(empty_known)})
    assert accepted.returncode == 0, accepted.stderr
    assert "10.77.1.2" in empty_known.read_text()


def test_verify_fails_when_head_moved(h1: Cli, app_repo: Path) -> None:
    deployed = commit(app_repo, "deployed")
    assert h1("deploy").returncode == 0
    moved = commit(app_repo, "not deployed")
    proc = h1("verify")
    assert proc.returncode == 1
    assert "MISMATCH" in proc.stdout and deployed[:12] in proc.stdout and moved in proc.stdout
    doc = h1.json("verify", ok_codes=(1,))
    assert doc["ok"] is False and doc["hosts"][0]["running"] == deployed and doc["hosts"][0]["expected"] == moved


def test_rollback_command_walks_back_release_by_release(h1: Cli, app_repo: Path) -> None:
    nothing = h1("rollback")
    assert nothing.returncode == 2 and "nothing to roll back to" in nothing.stderr

    v1 = commit(app_repo, "v1")
    assert h1("deploy").returncode == 0
    v1_image = api_image_id("h1")
    v2 = commit(app_repo, "v2")
    assert h1("deploy").returncode == 0
    v2_image = api_image_id("h1")
    commit(app_repo, "v3")
    assert h1("deploy").returncode == 0

    doc = h1.json("rollback", "-m", "bad release")
    assert doc["deploy"]["hosts"][0]["result"] == "succeeded", doc
    assert api_image_id("h1") == v2_image and version("h1")["commit_sha"] == v2
    records = h1.json("history")["hosts"][0]["records"]
    assert records[-1]["action"] == "rollback" and records[-1]["message"] == "bad release"

    # A second rollback goes one release further back, not back to v3.
    assert h1("rollback").returncode == 0
    assert api_image_id("h1") == v1_image and version("h1")["commit_sha"] == v1
    # v1 was the first deploy on this host: there is nothing before it.
    last = h1("rollback")
    assert last.returncode == 2 and "nothing to roll back to" in last.stderr


def test_targeted_workers_are_recreated_on_the_new_image(h1: Cli, app_repo: Path, testbed_env: dict[str, str]) -> None:
    commit(app_repo, "v1")
    assert h1("deploy").returncode == 0
    image = host_docker("h1", "inspect", "--format", "{{.Config.Image}}", "ghosthands-api-1")
    host_docker(
        "h1",
        "run",
        "-d",
        "--name",
        "gh-worker-abcdef12",
        "--network",
        "host",
        "--label",
        "gh.role=targeted-worker",
        "--label",
        "gh.worker_id=abcdef12-0000-4000-8000-000000000001",
        "--label",
        "gh.status_port=3102",
        "-e",
        "GH_WORKER_PORT=3102",
        "-e",
        "GH_SECRET=s3cr3t-value",
        "--restart",
        "unless-stopped",
        image,
        "worker",
    )
    old_id = containers("h1")["gh-worker-abcdef12"]
    v2 = commit(app_repo, "v2")
    proc = h1("-v", "deploy")
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-value" not in proc.stdout + proc.stderr
    info = json.loads(host_docker("h1", "inspect", "gh-worker-abcdef12"))[0]
    assert info["Id"] != old_id
    assert info["State"]["Running"] is True
    assert info["Config"]["Labels"]["gh.worker_id"] == "abcdef12-0000-4000-8000-000000000001"
    assert info["Config"]["Labels"]["gh.status_port"] == "3102"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["GH_SECRET"] == "s3cr3t-value" and env["GH_WORKER_PORT"] == "3102"
    assert env["COMMIT_SHA"] == v2  # from the new image, not inherited from the old container
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["Image"] == api_image_id("h1")
    assert json.loads(host_http("h1", "/worker/health", 3102))["status"] == "idle"


def test_a_worker_that_crashes_on_start_is_rolled_back_too(h1: Cli, app_repo: Path) -> None:
    good = commit(app_repo, "good worker")
    assert h1("deploy").returncode == 0
    before = api_image_id("h1")
    start = (app_repo / "app" / "start.sh").read_text()
    crashing = start.replace("role=${1:-api}\n", 'role=${1:-api}\n[ "$role" = worker ] && exit 3\n', 1)
    assert crashing != start
    commit(app_repo, "worker crashes", {"app/start.sh": crashing})
    proc = h1("deploy")
    assert proc.returncode == 1, proc.stderr
    assert "rolled back" in proc.stdout and "the worker is" in proc.stdout
    assert api_image_id("h1") == before
    assert version("h1")["commit_sha"] == good
    # The restored worker answers again (it may take a moment to bind its port).
    deadline = time.monotonic() + 20
    while not host_http("h1", "/worker/health", 3101) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(host_http("h1", "/worker/health", 3101))["deploy_safe"] is True


def test_rollback_to_a_named_tag(h1: Cli, app_repo: Path) -> None:
    old = commit(app_repo, "old release")
    old_tag = git(app_repo, "rev-parse", "--short", "HEAD")
    assert h1("deploy").returncode == 0
    commit(app_repo, "new release")
    assert h1("deploy").returncode == 0
    missing = h1("rollback", "--to", "no-such-tag-9")
    assert missing.returncode == 2 and "no such tag" in missing.stderr
    doc = h1.json("rollback", "--to", old_tag)
    assert doc["deploy"]["hosts"][0]["result"] == "succeeded"
    assert version("h1")["commit_sha"] == old
    assert h1("verify", "--expect", old).returncode == 0


def test_staging_uses_the_staging_compose_file(h1: Cli, app_repo: Path) -> None:
    sha = commit(app_repo, "staging")
    staging = h1("deploy", extra_env={"GH_ENVIRONMENT": "staging"})
    assert staging.returncode == 0, staging.stderr
    labels = json.loads(host_docker("h1", "inspect", "--format", "{{json .Config.Labels}}", "ghosthands-api-1"))
    assert labels["com.docker.compose.project.config_files"] == "/opt/ghosthands/docker-compose.staging.yml"
    assert version("h1")["commit_sha"] == sha
    bad = h1("status", extra_env={"GH_ENVIRONMENT": "qa"})
    assert bad.returncode == 2 and "GH_ENVIRONMENT" in bad.stderr and "production or staging" in bad.stderr
