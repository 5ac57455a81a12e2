"""Disk and platform on a real testbed host (h1): retention after each deploy, `prune`, rollback
without the registry, the disk preflight and the architecture guard with a real arm64 image."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, api_image_id, commit, containers, host_docker

H1 = "root@10.77.1.2"
REPO = "10.88.0.1:5131/ghosthands"
H1_HISTORY = Path("/var/lib/ghtb/h1/opt/.ghdeploy/history.jsonl")


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8", RETAIN_RELEASES="2")


def deploy(cli: Cli, app_repo: Path, name: str) -> str:
    """Commit, deploy; return the image ID now running."""
    commit(app_repo, name)
    cli.json("deploy")
    return api_image_id("h1")


def present(image_id: str) -> bool:
    return bool(host_docker("h1", "image", "inspect", "--format", "{{.Id}}", image_id, check=False))


def docker_h1(*args: str, stdin: bytes | None = None) -> None:
    subprocess.run(
        ["docker", "-H", "unix:///run/ghtb/h1/docker.sock", *args], input=stdin, check=True, capture_output=True
    )


def empty_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("README")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"other"))
    return buffer.getvalue()


@pytest.fixture
def blocked_registry() -> Iterator[None]:
    """h1 cannot reach the registry (its route to 10.88.0.1 is a blackhole) while the test runs."""
    route = ["ip", "netns", "exec", "h1", "ip", "route"]
    subprocess.run([*route, "replace", "blackhole", "10.88.0.1/32"], check=True)
    try:
        yield
    finally:
        subprocess.run([*route, "del", "blackhole", "10.88.0.1/32"], check=False)


def test_retention_prune_and_rollback_without_the_registry(
    h1: Cli, app_repo: Path, request: pytest.FixtureRequest
) -> None:
    # Another application's image on the host: never ours to remove.
    docker_h1("import", "-", "otherapp/web:1", stdin=empty_tar())
    other = host_docker("h1", "image", "inspect", "--format", "{{.Id}}", "otherapp/web:1")

    v1 = deploy(h1, app_repo, "v1")
    v2 = deploy(h1, app_repo, "v2")
    # A stopped container still uses v1 (e.g. a targeted worker that exited): v1 must stay.
    host_docker("h1", "create", "--name", "day2-stopped", v1)
    v3 = deploy(h1, app_repo, "v3")
    assert present(v1) and present(v2) and present(v3)  # v1 only because a container uses it

    host_docker("h1", "rm", "day2-stopped")
    dry = h1.json("prune", "--dry-run")
    [host] = dry["hosts"]
    assert host["dry_run"] and [r["image_id"] for r in host["removed"]] == [v1]
    assert {k["image_id"] for k in host["kept"]} >= {v2, v3}
    assert present(v1)  # a dry run removes nothing

    done = h1.json("prune")
    assert [r["image_id"] for r in done["hosts"][0]["removed"]] == [v1]
    assert not present(v1) and present(v2) and present(v3) and present(other)

    # Each successful deploy prunes by itself: RETAIN_RELEASES=2 keeps v4 and v3, v2 goes.
    v4 = deploy(h1, app_repo, "v4")
    assert not present(v2) and present(v3) and present(v4) and present(other)
    last = json.loads(H1_HISTORY.read_text().splitlines()[-1])
    assert last["image_id"] == v4

    # Rollback needs no registry for a retained release: h1 cannot reach it, nor can we.
    request.getfixturevalue("blocked_registry")
    proc = h1("rollback", extra_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "ECR_REGISTRY": "10.77.250.1:5131"})
    assert proc.returncode == 0, proc.stderr
    assert api_image_id("h1") == v3
    assert present(other)
    docker_h1("rmi", "otherapp/web:1")


def test_disk_preflight_refuses_a_host_without_room(h1: Cli, app_repo: Path) -> None:
    deploy(h1, app_repo, "d1")
    before = containers("h1")
    history = H1_HISTORY.read_text()
    disk = h1.json("status")["hosts"][0]["disk"]
    assert disk["docker_root"] == "/var/lib/ghtb/h1/docker" and disk["architecture"] == "amd64"
    free_mb = disk["free_bytes"] // (1024 * 1024)
    # No honest way to fill a shared machine's disk: ask for more headroom than the disk has.
    commit(app_repo, "d2")
    proc = h1("deploy", extra_env={"DISK_RESERVE_MB": str(free_mb + 2048)})
    assert proc.returncode == 2, proc.stderr
    assert H1 in proc.stderr and "/var/lib/ghtb/h1/docker has" in proc.stderr and "MB free" in proc.stderr
    assert "ghdeploy prune" in proc.stderr and "no host was touched" in proc.stderr
    assert containers("h1") == before and H1_HISTORY.read_text() == history
    assert h1.json("lock", "status")["hosts"][0]["holder"] is None


def arm64_base() -> str:
    """An empty base image whose config says linux/arm64 (a `scratch` for arm64), loaded locally.

    docker's legacy builder (this testbed has no buildx) ignores --platform for FROM scratch but
    keeps a base image's platform; so an app built FROM this is a real linux/arm64 image.
    """
    config = {
        "architecture": "arm64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    raw = json.dumps(config).encode()
    name = f"{hashlib.sha256(raw).hexdigest()}.json"
    manifest = json.dumps([{"Config": name, "RepoTags": ["ghtb-scratch-arm64:1"], "Layers": []}]).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, data in ((name, raw), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load"], input=buffer.getvalue(), check=True, capture_output=True)
    return "ghtb-scratch-arm64:1"


def test_an_arm64_image_is_refused_on_an_amd64_host(h1: Cli, app_repo: Path) -> None:
    deploy(h1, app_repo, "amd64 first")
    before = containers("h1")
    history = H1_HISTORY.read_text()

    # The legacy builder would silently build amd64 from FROM scratch: build says so instead.
    proc = h1("build", "--platform", "linux/arm64")
    assert proc.returncode == 2 and "for linux/amd64, not the linux/arm64" in proc.stderr, proc.stderr
    multi = h1("build", extra_env={"GH_PLATFORM": "linux/amd64,linux/arm64"})
    assert multi.returncode == 2 and "multi-arch" in multi.stderr and "buildx" in multi.stderr

    base = arm64_base()
    try:
        dockerfile = (app_repo / "Dockerfile").read_text().replace("FROM scratch", f"FROM {base}")
        commit(app_repo, "arm64 build", {"Dockerfile": dockerfile})
        built = h1("build", "--platform", "linux/arm64")
        assert built.returncode == 0, built.stderr
        assert "for linux/arm64 (--platform)" in built.stderr
        assert h1("push").returncode == 0
        refused = h1("deploy", "--deploy-only")
        assert refused.returncode == 2, refused.stderr
        assert H1 in refused.stderr and "linux/amd64" in refused.stderr and "linux/arm64" in refused.stderr
        assert "no host was touched" in refused.stderr
        assert containers("h1") == before and H1_HISTORY.read_text() == history
        assert h1.json("lock", "status")["hosts"][0]["holder"] is None
    finally:
        subprocess.run(["docker", "rmi", base], capture_output=True, check=False)


def test_default_build_platform_is_said(h1: Cli, app_repo: Path) -> None:
    proc = h1("build")
    assert proc.returncode == 0, proc.stderr
    assert "for linux/amd64 (GH_PLATFORM)" in proc.stderr
