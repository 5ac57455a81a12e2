"""Disk and platform decisions: which images a host keeps, which it loses; fit and architecture checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghdeploy import hostfit, prune
from ghdeploy import remote_commands as rc
from ghdeploy import remote_day2 as day2
from ghdeploy.hostfit import MachineFacts, PlatformImage
from ghdeploy.progress import NullReporter

REPO = "123.dkr.ecr.us-east-1.amazonaws.com/ghosthands"


def image(n: int, tags: list[str], digests: list[str] | None = None, size: int = 100 * 1024 * 1024) -> dict:
    return {"Id": f"sha256:{n:064x}", "RepoTags": tags, "RepoDigests": digests or [], "Size": size}


def iid(n: int) -> str:
    return f"sha256:{n:064x}"


def deploy(to: int, frm: int | None, result: str = "succeeded") -> dict:
    return {"action": "deploy", "result": result, "image_id": iid(to), "from": {"image_id": iid(frm)} if frm else None}


def test_recent_releases_walk_the_history_newest_first() -> None:
    history = [deploy(1, None), deploy(2, 1), deploy(3, 2), deploy(9, 3, "rolled back"), deploy(4, 3)]
    assert prune.recent_releases(history, 3) == [iid(4), iid(3), iid(2)]
    assert prune.recent_releases(history, 10) == [iid(4), iid(3), iid(2), iid(1)]
    assert prune.recent_releases([], 3) == []


def test_plan_keeps_releases_and_used_images_and_never_touches_other_apps() -> None:
    images = [
        image(1, [f"{REPO}:v1"], [f"{REPO}@sha256:aa"]),  # old release: goes
        image(2, [f"{REPO}:v2"]),  # retained release
        image(3, [f"{REPO}:v3", f"{REPO}:latest"]),  # current release
        image(4, [f"{REPO}:failed"]),  # a failed deploy's image, used by a stopped targeted worker
        image(5, [], [f"{REPO}@sha256:bb"]),  # dangling, ours: goes
        image(6, ["nginx:1.25"], ["nginx@sha256:cc"]),  # another application's
        image(7, [], []),  # a dangling layer of unknown origin: not ours to judge
        image(8, [f"{REPO}:v0", "other/app:prod"]),  # shared with another repository: only untagged
        image(9, [f"{REPO}-sidecar:v1"]),  # a repository whose name starts like ours
    ]
    plan = prune.plan(images, in_use={iid(4)}, releases=[iid(3), iid(2)], repo=REPO)
    assert set(plan.keep) == {iid(2), iid(3), iid(4)}
    removed = {r.image_id: r for r in plan.remove}
    assert set(removed) == {iid(1), iid(5), iid(8)}
    assert removed[iid(1)].refs == [f"{REPO}:v1"] and not removed[iid(1)].untag_only
    assert removed[iid(5)].refs == [iid(5)]
    assert removed[iid(8)].refs == [f"{REPO}:v0"] and removed[iid(8)].untag_only
    assert plan.freed_bytes == 2 * 100 * 1024 * 1024  # an untag frees nothing


def test_inventory_is_parsed_from_one_call() -> None:
    text = '[{"Id": "sha256:1", "RepoTags": []}]\n' + day2.PRUNE_MARKER + "\nsha256:1\nsha256:2\n"
    images, in_use = prune.parse_inventory(text)
    assert images == [{"Id": "sha256:1", "RepoTags": []}] and in_use == {"sha256:1", "sha256:2"}


def test_prune_host_removes_one_image_per_call_and_reports_refusals() -> None:
    from ghdeploy.hosts import Host
    from ghdeploy.transports.base import CommandResult
    from ghdeploy.transports.http11 import Client

    inventory = (
        json.dumps([{"Id": iid(n), "RepoTags": [f"{REPO}:v{n}"], "Size": 1} for n in (1, 2, 3)])
        + "\n"
        + day2.PRUNE_MARKER
        + "\n"
        + iid(3)
        + "\n"
    )
    calls: list[list[str]] = []

    class Fake:
        host = Host("h1")

        def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
            calls.append(argv)
            if argv == day2.image_inventory():
                return CommandResult(0, inventory, "")
            if argv[:2] == ["docker", "rmi"]:
                if argv[2].endswith(":v2"):
                    return CommandResult(1, "", "conflict: image is being used by a container")
                return CommandResult(0, "", "")
            return CommandResult(0, "", "")  # history: empty

        def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
            return self.run(argv)

        def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
            return None  # no Engine API: the docker CLI's commands are what this fake answers

        def http_client(self, timeout: float = 5.0) -> Client:
            raise AssertionError("prune needs no HTTP")

    layout = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
    dry = prune.prune_host(Fake(), layout, REPO, 3, dry_run=True)
    assert not [c for c in calls if c[:2] == ["docker", "rmi"]] and len(dry.plan.remove) == 2  # type: ignore[union-attr]
    result = prune.prune_host(Fake(), layout, REPO, 3)
    assert [c for c in calls if c[:2] == ["docker", "rmi"]] == [
        ["docker", "rmi", f"{REPO}:v1"],
        ["docker", "rmi", f"{REPO}:v2"],
    ]
    assert result.removed == [iid(1)] and "in use" not in result.errors[0] and "conflict" in result.errors[0]
    assert "1 not removed" in prune.summary(result)


def test_host_facts_are_parsed() -> None:
    text = "/var/lib/docker|x86_64|linux\n/dev/nvme0n1p1  20959212 15728640 5230572  76% /\n"
    facts = hostfit.parse_facts(text)
    assert facts == MachineFacts("/var/lib/docker", "amd64", "linux", 5230572 * 1024, 20959212 * 1024)
    assert hostfit.parse_facts("/var/lib/docker|aarch64|linux\n") == MachineFacts(
        "/var/lib/docker", "arm64", "linux", None, None
    )
    assert hostfit.parse_facts("") is None


def test_platform_mismatch_names_both_sides() -> None:
    arm = PlatformImage("linux", "arm64", None, 10)
    amd = PlatformImage("linux", "amd64", None, 10)
    facts = {"h1": MachineFacts("/d", "amd64", "linux", 1, 1), "h2": MachineFacts("/d", "arm64", "linux", 1, 1)}
    problems = hostfit.platform_problems(facts, [arm], "ghosthands:v1")
    assert set(problems) == {"h1"}
    assert "linux/amd64" in problems["h1"] and "linux/arm64" in problems["h1"]
    assert hostfit.platform_problems(facts, [arm, amd], "ghosthands:v1") == {}  # a multi-arch index


def test_disk_fit_uses_the_hosts_platform_size_and_the_reserve() -> None:
    mb = 1024 * 1024
    images = [PlatformImage("linux", "amd64", None, 400 * mb), PlatformImage("linux", "arm64", None, 4000 * mb)]
    facts = {
        "h1": MachineFacts("/var/lib/docker", "amd64", "linux", 2100 * mb, 8000 * mb),  # needs 1000 + 1024
        "h2": MachineFacts("/var/lib/docker", "amd64", "linux", 2000 * mb, 8000 * mb),
        "h3": MachineFacts("/var/lib/docker", "arm64", "linux", 12000 * mb, 20000 * mb),
    }
    problems = hostfit.disk_problems(facts, images, "ghosthands:v1", reserve_mb=1024)
    assert set(problems) == {"h2"}
    assert "2000 MB free" in problems["h2"] and "2024 MB" in problems["h2"] and "/var/lib/docker" in problems["h2"]


def test_preflight_reads_the_host_facts_in_the_same_call() -> None:
    from ghdeploy.engine.fleet import preflight_hosts
    from ghdeploy.hosts import Host
    from ghdeploy.transports.base import CommandResult

    layout = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
    calls: list[list[str]] = []

    class Conn:
        def __init__(self, label: str, out: str) -> None:
            self.host = Host(label)
            self.out = out

        def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
            calls.append(argv)
            return CommandResult(0, self.out, "")

    conns = {
        "h1": Conn("h1", "2.40.0\n/var/lib/docker|x86_64|linux\n/dev/x 1000 400 600 40% /\n"),
        "h2": Conn("h2", "2.40.0\n/data/docker|aarch64|linux\n/dev/y 1000 900 100 90% /data\n"),
    }
    facts: dict[str, MachineFacts] = {}
    assert preflight_hosts(conns, layout, NullReporter(), machine=facts) == {}  # type: ignore[arg-type]
    assert calls == [rc.preflight(layout)] * 2
    assert facts == {
        "h1": MachineFacts("/var/lib/docker", "amd64", "linux", 600 * 1024, 1000 * 1024),
        "h2": MachineFacts("/data/docker", "arm64", "linux", 100 * 1024, 1000 * 1024),
    }


def test_build_refuses_a_multi_arch_platform_and_checks_what_docker_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghdeploy import images
    from ghdeploy.config import load_config
    from ghdeploy.errors import ConfigError

    environ = {"ECR_REGISTRY": "123.dkr.ecr.us-east-1.amazonaws.com", "GH_PLATFORM": "linux/amd64,linux/arm64"}
    config = load_config(command="build", environ=environ, cwd=tmp_path)
    with pytest.raises(ConfigError, match="multi-arch") as info:
        images.build_image(config, tmp_path, NullReporter())
    assert "docker buildx build --platform linux/amd64,linux/arm64" in (info.value.hint or "")
    assert images._same_platform("linux/arm64/v8", "linux/arm64")
    assert not images._same_platform("linux/amd64", "linux/arm64")
    assert not images._same_platform("linux/arm/v6", "linux/arm/v7")


FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$CALLS"
case "$1" in
  info) echo "/srv/docker-info-root|aarch64|linux" ;;
esac
"""


def test_host_facts_script_asks_docker_info(tmp_path: Path) -> None:
    """The real script, run by sh against a stand-in docker: docker info names root, arch and OS."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}
    out = subprocess.run(day2.host_facts(), env=env, capture_output=True, text=True, check=True).stdout
    facts = hostfit.parse_facts(out)
    assert facts is not None
    assert (facts.docker_root, facts.architecture) == ("/srv/docker-info-root", "arm64")
    assert "docker info" in calls.read_text()


def test_the_data_root_comes_from_a_containers_own_files() -> None:
    from ghdeploy.snapshot import data_root_of

    assert data_root_of({"HostnamePath": "/var/lib/docker/containers/abc/hostname"}) == "/var/lib/docker"
    assert data_root_of({"HostnamePath": "/data/d/containers/x/containers/abc/hostname"}) == "/data/d/containers/x"
    assert data_root_of({"HostnamePath": ""}) is None and data_root_of({}) is None
    assert data_root_of({"HostnamePath": "relative/containers/abc/hostname"}) is None


def test_disk_of_a_known_root_runs_no_docker(tmp_path: Path) -> None:
    """The real command, with no docker (nor a shell) on PATH at all: df answers."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("df",):
        (bin_dir / tool).symlink_to(next(Path(d, tool) for d in ("/usr/bin", "/bin") if Path(d, tool).exists()))
    env = {**os.environ, "PATH": str(bin_dir)}  # no docker to call
    out = subprocess.run(day2.disk_of(str(tmp_path)), env=env, capture_output=True, text=True, check=True).stdout
    facts = hostfit.facts_from_df(str(tmp_path), os.uname().machine, out)
    assert facts is not None and facts.docker_root == str(tmp_path)
    assert facts.architecture == hostfit.normalise_arch(os.uname().machine) and facts.os == "linux"
    assert facts.free_bytes is not None and facts.size_bytes is not None
