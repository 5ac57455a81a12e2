"""`rollback` always goes back (testbed host h1): past same-image redeploys, never to what already
runs, and after a killed deploy that nothing healed, to the image that deploy recorded."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, api_image_id, commit, git
from tests.integration.test_guardian import TIMEOUTS, Running, opt

H1 = "root@10.77.1.2"


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, **TIMEOUTS)


def test_a_same_image_redeploy_is_skipped_and_the_running_image_refused(h1: Cli, app_repo: Path) -> None:
    commit(app_repo, "v1")
    assert h1("deploy").returncode == 0
    v1 = api_image_id("h1")
    commit(app_repo, "v2")
    v2_tag = git(app_repo, "rev-parse", "--short", "HEAD")
    assert h1("deploy").returncode == 0
    # The same fleet deploy run again (it had stopped half-way elsewhere): v2 over v2.
    again = h1.json("deploy", "--deploy-only")
    assert again["deploy"]["hosts"][0]["result"] == "succeeded"
    assert again["deploy"]["hosts"][0]["from"]["image_id"] == again["deploy"]["hosts"][0]["image_id"]

    same = h1("rollback", "--to", v2_tag)
    assert same.returncode == 2, same.stderr
    assert "already runs" in same.stderr and "nothing to roll back" in same.stderr

    doc = h1.json("rollback")
    assert doc["deploy"]["hosts"][0]["result"] == "succeeded"
    assert api_image_id("h1") == v1  # not a restart of v2


def test_after_a_killed_deploy_nothing_healed_rollback_uses_its_recorded_image(h1: Cli, app_repo: Path) -> None:
    commit(app_repo, "v1")
    assert h1("deploy").returncode == 0
    v1 = api_image_id("h1")
    commit(app_repo, "v2")
    assert h1("deploy", "--push-only").returncode == 0
    run = Running(h1, "deploy", "--deploy-only")
    run.wait_line("waiting for /health")
    run.kill()
    # As if the host had rebooted right then: its guardian is gone too, the lock is released by hand.
    for pid_file in opt("h1").glob("guardian/*/pid"):
        pid = pid_file.read_text().strip()
        try:  # a pid file may name an instance that already ended (the first guardian hands over)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid.isdigit() else b""
        except FileNotFoundError:
            continue
        if b"ghdeploy-guardian" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert h1("lock", "release", "--host", H1, "--yes").returncode == 0
    assert (opt("h1") / "pending.json").exists()
    assert api_image_id("h1") != v1  # v2 runs, unproven

    status = h1.json("status", ok_codes=(0, 1))
    assert status["hosts"][0]["unfinished_deploy"] is not None
    proc = h1("rollback")
    assert proc.returncode == 0, proc.stderr
    assert "unfinished deploy" in proc.stderr
    assert api_image_id("h1") == v1
