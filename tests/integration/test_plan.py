"""The dry run's plan is the list of commands a real deploy then sends (real CLI, testbed h1).

The plan comes from `deploy --dry-run --json`; what a real deploy sends comes from its `-v`
output, which shows each remote command and HTTP request as it runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ghdeploy.transports.recording import STDIN_NOTE, Recorded, collapse_polls
from ghdeploy.transports.simulated import PULLED_ID
from tests.integration.conftest import Cli, api_image_id, commit

H1 = "root@10.77.1.2"


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")


def push(cli: Cli, repo: Path, name: str) -> str:
    commit(repo, name, {"VERSION": f"{name} {uuid.uuid4()}\n"})
    tag = f"plan-{name}-{uuid.uuid4().hex[:8]}"
    proc = cli("deploy", "--push-only", "--tag", tag)
    assert proc.returncode == 0, proc.stderr
    return tag


def sent(stderr: str, host: str) -> list[str]:
    """The commands and requests a `-v` run printed for `host`, from taking its lock to freeing it."""
    entries: list[Recorded] = []
    prefix = f"{host}: "
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line.startswith(prefix):
            continue
        line = line[len(prefix) :]
        if line.startswith("$ "):
            text = line[2:]
            stdin = text.endswith(STDIN_NOTE)
            entries.append(Recorded("run", text.removesuffix(STDIN_NOTE), stdin=stdin))
        elif re.match(r"(GET|POST) (localhost:\d+/|/\S+\.sock /)", line):  # a port, or the engine's socket
            entries.append(Recorded("http", line))
    shown = [e.shown for e in collapse_polls(entries)]
    start = next(i for i, c in enumerate(shown) if "/.ghdeploy/lock" in c and "lock-info" in c)
    end = max(i for i, c in enumerate(shown) if c.startswith('sh -c \'test -d "$1" || exit 0; grep -qF'))
    return shown[start : end + 1]


def test_the_dry_run_plan_is_what_the_real_deploy_then_runs(h1: Cli, app_repo: Path) -> None:
    v1 = push(h1, app_repo, "v1")
    assert h1("deploy", "--deploy-only", "--tag", v1).returncode == 0
    v2 = push(h1, app_repo, "v2")

    (item,) = h1.json("deploy", "--deploy-only", "--dry-run", "--tag", v2)["plan"]
    # Every host pulls first (all at once), then the host's own sequence starts.
    assert item["summary"][:2] == [f"pulling ghosthands:{v2}", "image ready, waiting for the switch"]
    assert item["summary"][2] == "recording what runs now"

    real = h1("-v", "deploy", "--deploy-only", "--tag", v2)
    assert real.returncode == 0, real.stderr
    new_id = api_image_id("h1")
    commands = sent(real.stderr, H1)
    commands = [re.sub(r"docker-config-[0-9a-f]{12}", "docker-config-XXXXXXXXXXXX", c) for c in commands]
    commands = [re.sub(r"(/\.ghdeploy/lock) [0-9a-f]{16}$", r"\1 " + "X" * 16, c) for c in commands]
    commands = [c.replace(new_id, PULLED_ID) for c in commands]  # unknown to a plan made before the pull
    assert commands == item["commands"]
    assert "123456789012-auth-token" not in real.stderr
