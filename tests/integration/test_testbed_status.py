"""`scripts/testbed status` tells a dockerd that `up` adopted (one it did not start) from one that is down."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TESTBED = Path(__file__).resolve().parents[2] / "scripts" / "testbed"


def test_an_adopted_dockerd_is_up_not_down(testbed_env: dict[str, str], tmp_path: Path) -> None:
    # An empty runtime directory: no pid file of ours, while /var/run/docker.sock answers.
    env = dict(os.environ, GHTB_STATUS_RUN=str(tmp_path))
    proc = subprocess.run([str(TESTBED), "status"], env=env, capture_output=True, text=True, timeout=60)
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "up (adopted" in lines["dockerd"], proc.stdout
    assert "down" not in lines["dockerd"]


def test_status_of_the_running_testbed_is_all_up(testbed_env: dict[str, str]) -> None:
    proc = subprocess.run([str(TESTBED), "status"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].split()[1] == "up"
