"""Targeted workers and other services on a real host (h1): replaced, never destroyed first.

One test walks a host through three deploys, because every deploy costs real seconds on the
shared testbed: a first deploy on an empty host with an extra `cache` service, a deploy that
replaces targeted workers carrying their whole configuration, and a deploy whose replacement of a
targeted worker fails and must leave the old containers in place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, api_image_id, commit, containers, git, host_docker, host_http

H1 = "root@10.77.1.2"
H1_OPT = Path("/var/lib/ghtb/h1/opt")
DATA = Path("/var/lib/ghtb/h1/targeted-data")  # bind sources live in the root mount namespace
PEM = "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6\nAgEAAkEAq=\n-----END PRIVATE KEY-----\n"
CACHE = """
  cache:
    image: local/cache-like:1
    entrypoint: ["/busybox", "sleep", "2147483647"]
    network_mode: host
    restart: unless-stopped
"""


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Iterator[Cli]:
    clean_hosts("h1")
    shutil.rmtree(DATA, ignore_errors=True)
    yield cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")
    shutil.rmtree(DATA, ignore_errors=True)


def docker_run_with_env(*args: str, env: dict[str, str]) -> str:
    """`docker run` on h1 with -e NAME taking values from this process's environment (multi-line)."""
    proc = subprocess.run(
        ["docker", "-H", "unix:///run/ghtb/h1/docker.sock", "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def inspect(name: str) -> dict:
    return json.loads(host_docker("h1", "inspect", name))[0]


def env_of(info: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in info["Config"]["Env"])


def test_targeted_workers_are_replaced_with_their_whole_configuration(
    h1: Cli, app_repo: Path, testbed_env: dict[str, str]
) -> None:
    # --- a first deploy on an empty host, whose compose file has a service not using ECR_IMAGE
    compose = H1_OPT / "docker-compose.prod.yml"
    compose.write_text(compose.read_text() + CACHE)
    # the cache's image exists only on the host (imported from busybox): pulling it would fail
    busybox = Path(testbed_env["GHTB_SAMPLE_APP"]) / "busybox"
    tar = subprocess.run(["tar", "-C", str(busybox.parent), "-c", "busybox"], capture_output=True, check=True).stdout
    imported = subprocess.run(
        ["docker", "-H", "unix:///run/ghtb/h1/docker.sock", "import", "-", "local/cache-like:1"],
        input=tar,
        capture_output=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    commit(app_repo, "v1")
    proc = h1("deploy")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to roll back to" in proc.stderr  # said before the first deploy starts
    image = host_docker("h1", "inspect", "--format", "{{.Config.Image}}", "ghosthands-api-1")
    cache_id = containers("h1")["ghosthands-cache-1"]

    # --- targeted workers: ours running (multi-line env, bind mount, ...), ours stopped, another app's
    DATA.mkdir(parents=True)
    (DATA / "marker").write_text("kept")
    docker_run_with_env(
        "-d",
        "--name",
        "gh-worker-aaaa0001",
        "--network",
        "host",
        "--label",
        "gh.role=targeted-worker",
        "--label",
        "gh.status_port=3102",
        "-e",
        "GH_WORKER_PORT=3102",
        "-e",
        "PEM_KEY",
        "-e",
        "JSON_CFG",
        "-v",
        f"{DATA}:/data:ro",
        "--mount",
        f"type=bind,source={DATA},target=/data2",
        "--user",
        "0:0",
        "--workdir",
        "/tmp",
        "--cap-drop",
        "NET_RAW",
        "--log-opt",
        "max-size=1m",
        "--ulimit",
        "nofile=1024:2048",
        "--memory",
        "256m",
        "--memory-swap",
        "512m",
        "--restart",
        "unless-stopped",
        image,
        "worker",
        env={"PEM_KEY": PEM, "JSON_CFG": '{\n  "a": "it\'s $(x)"\n}'},
    )
    docker_run_with_env(
        "-d", "--name", "gh-worker-bbbb0002", "--network", "host", "--label", "gh.role=targeted-worker",
        "--label", "gh.status_port=3103", "-e", "GH_WORKER_PORT=3103", image, "worker", env={},
    )  # fmt: skip
    host_docker("h1", "stop", "-t", "1", "gh-worker-bbbb0002")
    host_docker("h1", "tag", image, "other.example/otherapp:1")
    docker_run_with_env(
        "-d", "--name", "other-worker", "--label", "gh.role=targeted-worker", "--network", "host",
        "--entrypoint", "/bin/busybox", "other.example/otherapp:1", "sleep", "2147483647", env={},
    )  # fmt: skip
    before = containers("h1")
    old_a = inspect("gh-worker-aaaa0001")

    # v2 ships an extra entrypoint that worker C below uses; v3 drops it
    entry = app_repo / "app" / "c-entry"
    entry.write_text('#!/bin/busybox sh\nexec /bin/busybox sh /app/start.sh "$@"\n')
    entry.chmod(0o755)
    v2 = commit(app_repo, "v2")
    proc = h1("-v", "deploy")
    assert proc.returncode == 0, proc.stderr
    assert "BEGIN PRIVATE KEY" not in proc.stdout + proc.stderr
    after = containers("h1")
    assert after["ghosthands-cache-1"] == cache_id  # not pulled, not recreated
    assert after["other-worker"] == before["other-worker"]  # another repository's worker: untouched
    assert inspect("other-worker")["State"]["Running"] is True
    assert not any(n.endswith(".ghdeploy-backup") for n in after)

    a = inspect("gh-worker-aaaa0001")
    assert a["Id"] != old_a["Id"] and a["Image"] == api_image_id("h1") and a["State"]["Running"] is True
    env = env_of(a)
    assert env["PEM_KEY"] == PEM and env["JSON_CFG"] == '{\n  "a": "it\'s $(x)"\n}'
    assert env["COMMIT_SHA"] == v2
    for key in ("Binds", "Mounts", "CapDrop", "LogConfig", "Ulimits", "Memory", "MemorySwap", "RestartPolicy"):
        assert a["HostConfig"][key] == old_a["HostConfig"][key], key
    assert (a["Config"]["User"], a["Config"]["WorkingDir"]) == ("0:0", "/tmp")
    assert json.loads(host_http("h1", "/worker/health", 3102))["status"] == "idle"

    b = inspect("gh-worker-bbbb0002")
    assert b["Id"] != before["gh-worker-bbbb0002"] and b["Image"] == a["Image"]
    assert b["State"]["Running"] is False  # it was stopped: it stays stopped

    # --- a replacement that cannot be created: the old containers stay, the host goes back to v2
    host_docker("h1", "rm", "-f", "gh-worker-bbbb0002")
    v2_ref = host_docker("h1", "inspect", "--format", "{{.Config.Image}}", "ghosthands-api-1")
    docker_run_with_env(
        "-d", "--name", "gh-worker-cccc0003", "--network", "host", "--label", "gh.role=targeted-worker",
        "--label", "gh.status_port=3104", "-e", "GH_WORKER_PORT=3104", "--entrypoint", "/app/c-entry",
        v2_ref, "worker", env={},
    )  # fmt: skip
    entry.unlink()  # on v3 the new C cannot start: its entrypoint is gone
    v2_image, a_id, c_id = api_image_id("h1"), a["Id"], containers("h1")["gh-worker-cccc0003"]
    commit(app_repo, "v3")
    assert not (app_repo / "app" / "c-entry").exists()
    proc = h1("deploy")
    assert proc.returncode == 1, proc.stderr
    assert "starting gh-worker-cccc0003 failed" in proc.stdout + proc.stderr
    assert "rolled back" in proc.stdout
    assert api_image_id("h1") == v2_image
    now = containers("h1")
    assert now["gh-worker-cccc0003"] == c_id  # the very same container, put back and started
    assert now["gh-worker-aaaa0001"] == a_id  # replaced, then its backup renamed back
    assert not any(n.endswith(".ghdeploy-backup") for n in now)
    assert env_of(inspect("gh-worker-aaaa0001"))["PEM_KEY"] == PEM
    assert inspect("gh-worker-aaaa0001")["State"]["Running"] is True
    assert inspect("gh-worker-cccc0003")["State"]["Running"] is True

    # --- a targeted worker whose configuration cannot be carried over exactly: refused in preflight
    docker_run_with_env(
        "-d", "--name", "gh-worker-dddd0004", "--network", "host", "--label", "gh.role=targeted-worker",
        "-e", "DOCKER_CFG", "-e", "GH_WORKER_PORT=3105", v2_ref, "worker", env={"DOCKER_CFG": "a\nb"},
    )  # fmt: skip
    before = containers("h1")
    refused = h1("deploy", "--deploy-only", "--tag", git(app_repo, "rev-parse", "--short", "HEAD"))
    assert refused.returncode == 2, refused.stderr
    assert "gh-worker-dddd0004: Config.Env DOCKER_CFG" in refused.stderr and "no host was touched" in refused.stderr
    assert containers("h1") == before
