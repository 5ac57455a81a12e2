"""Fleet behaviour on testbed hosts h2 and h3: rolling deploys, stop at first failure, parallel reads."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, api_image_id, commit, containers, host_http, make_broken

H2, H3 = "root@10.77.2.2", "root@10.77.3.2"
NOWHERE = "root@10.77.250.2"  # an address no testbed namespace owns: unreachable at once


@pytest.fixture
def fleet(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h2", "h3")
    return cli_factory(EC2_HOST=f"{H2},{H3}", HEALTH_TIMEOUT="6")


def commit_of(ns: str) -> str:
    return json.loads(host_http(ns, "/health/version"))["commit_sha"]


def test_rolling_deploy_updates_every_host_in_order(fleet: Cli, app_repo: Path) -> None:
    sha = commit(app_repo, "fleet v1")
    proc = fleet("deploy")
    assert proc.returncode == 0, proc.stderr
    assert commit_of("h2") == sha and commit_of("h3") == sha
    # One host at a time: h2 was healthy before h3 was touched.
    err = proc.stderr
    assert err.index(f"{H2}: ghosthands:") < err.index(f"{H3}: recording what runs now")
    assert "total 2: 2 succeeded" in proc.stdout

    status = fleet.json("status")
    assert [h["host"] for h in status["hosts"]] == [H2, H3]
    assert all(h["ok"] and h["version"]["commit_sha"] == sha for h in status["hosts"])
    verify = fleet.json("verify")
    assert [h["ok"] for h in verify["hosts"]] == [True, True]


def test_broken_image_stops_at_the_first_host(fleet: Cli, app_repo: Path) -> None:
    good = commit(app_repo, "fleet good")
    assert fleet("deploy").returncode == 0
    h2_image = api_image_id("h2")
    h3_before = containers("h3")
    make_broken(app_repo)
    proc = fleet("--json", "deploy")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    summary = doc["deploy"]["summary"]
    assert summary["total"] == 2 and summary["rolled back"] == 1 and summary["untouched"] == 1
    assert [h["result"] for h in doc["deploy"]["hosts"]] == ["rolled back", "untouched"]
    assert api_image_id("h2") == h2_image
    assert commit_of("h2") == good
    assert containers("h3") == h3_before
    assert commit_of("h3") == good


def test_batch_deploys_hosts_together_and_host_narrows(fleet: Cli, app_repo: Path) -> None:
    sha = commit(app_repo, "batch")
    doc = fleet.json("deploy", "--batch", "2")
    assert [h["result"] for h in doc["deploy"]["hosts"]] == ["succeeded", "succeeded"]
    assert commit_of("h2") == sha and commit_of("h3") == sha

    h2_before = containers("h2")
    only = commit(app_repo, "only h3")
    doc = fleet.json("deploy", "--host", H3)
    assert [h["host"] for h in doc["deploy"]["hosts"]] == [H3]
    assert commit_of("h3") == only and commit_of("h2") == sha
    assert containers("h2") == h2_before
    unknown = fleet("status", "--host", "root@10.77.9.9")
    assert unknown.returncode == 2 and "not among the configured hosts" in unknown.stderr


def test_one_bad_host_means_no_host_is_touched(fleet: Cli, app_repo: Path) -> None:
    commit(app_repo, "base")
    assert fleet("deploy").returncode == 0
    before = {ns: containers(ns) for ns in ("h2", "h3")}
    compose = Path("/var/lib/ghtb/h3/opt/docker-compose.prod.yml")
    moved = compose.with_name("compose.moved")
    shutil.move(compose, moved)
    try:
        commit(app_repo, "next")
        proc = fleet("deploy")
        assert proc.returncode == 2
        assert H3 in proc.stderr and "compose file does not exist" in proc.stderr
        assert "no host was touched" in proc.stderr
    finally:
        shutil.move(moved, compose)
    assert {ns: containers(ns) for ns in ("h2", "h3")} == before

    unreachable = fleet("deploy", "--deploy-only", extra_env={"EC2_HOST": f"{H2},{NOWHERE},{H3}"})
    assert unreachable.returncode == 2 and "10.77.250.2" in unreachable.stderr
    assert {ns: containers(ns) for ns in ("h2", "h3")} == before


def test_status_and_verify_report_every_host_even_when_one_is_down(fleet: Cli, app_repo: Path) -> None:
    sha = commit(app_repo, "reads")
    assert fleet("deploy").returncode == 0
    env = {"EC2_HOST": f"{H2},{NOWHERE},{H3}"}
    status = fleet("--json", "status", extra_env=env)
    assert status.returncode == 1
    rows = json.loads(status.stdout)["hosts"]
    assert [r["host"] for r in rows] == [H2, NOWHERE, H3]
    assert rows[0]["ok"] and rows[2]["ok"] and not rows[1]["ok"] and rows[1]["error"]
    table = fleet("status", extra_env=env)
    assert table.returncode == 1 and "unreachable" in table.stdout and H3 in table.stdout

    verify = fleet("--json", "verify", extra_env=env)
    assert verify.returncode == 1
    rows = json.loads(verify.stdout)["hosts"]
    assert [r["ok"] for r in rows] == [True, False, True]
    assert rows[0]["running"] == sha


def test_a_host_that_cannot_pull_stops_the_deploy_before_any_host_is_switched(fleet: Cli, app_repo: Path) -> None:
    good = commit(app_repo, "prepull good")
    assert fleet("deploy").returncode == 0
    before = {ns: containers(ns) for ns in ("h2", "h3")}
    commit(app_repo, "prepull new")
    # h3 cannot reach the registry, so its pull fails. h2 comes first in the rolling order and
    # would have been switched already if the pulls ran inside the rolling loop.
    route = ["ip", "netns", "exec", "h3", "ip", "route"]
    subprocess.run([*route, "add", "unreachable", "10.88.0.1/32"], check=True)
    try:
        proc = fleet("--json", "deploy")
    finally:
        subprocess.run([*route, "del", "unreachable", "10.88.0.1/32"], check=False)
    assert proc.returncode == 1, proc.stderr
    hosts = {h["host"]: h for h in json.loads(proc.stdout)["deploy"]["hosts"]}
    assert hosts[H3]["result"] == "failed" and hosts[H3]["error"].startswith("pull failed"), hosts[H3]
    assert hosts[H2]["result"] == "untouched"
    assert hosts[H2]["notes"] == [f"not switched: the image could not be pulled on {H3}"]
    assert containers("h2") == before["h2"] and containers("h3") == before["h3"]
    assert commit_of("h2") == good and commit_of("h3") == good
