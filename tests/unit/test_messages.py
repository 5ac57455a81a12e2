"""Messages that point the right way: the real reason of an unreadable host in status, a host named
once in a preflight error, no talk of stopping a worker that is not there, credentials hints."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ghdeploy import remote_commands as rc
from ghdeploy import render, render_hosts
from ghdeploy.engine import fleet as engine_fleet
from ghdeploy.engine import host as engine
from ghdeploy.environment import Environment
from ghdeploy.errors import CredentialsError, ExitCode, HostKeyError, PreflightError, SSHError, problem_kind
from ghdeploy.hostops import ImageRecord, ServiceState, Snapshot
from ghdeploy.hosts import Host
from ghdeploy.progress import RecordingReporter
from ghdeploy.status import HostStatus
from ghdeploy.transports.base import CommandResult
from ghdeploy.waiting import Clock

LAYOUT = rc.RemoteLayout(app_dir="/opt/ghosthands", compose_file="/opt/ghosthands/docker-compose.prod.yml")
UNKNOWN = HostKeyError(
    "root@h1",
    "unknown host key for h1: ssh-ed25519 SHA256:abc (not in /k)",
    "verify that SHA256:abc is the host's key, then re-run with --accept-new-host-key",
)


def json_env() -> Environment:
    """A run with --json, on the streams pytest captures now."""
    return Environment(json=True)


def text_env(verbose: int = 0) -> Environment:
    return Environment(verbose=verbose)


def test_problem_kinds() -> None:
    assert problem_kind(UNKNOWN) == "unknown host key"
    assert problem_kind(HostKeyError("h", "host key for h has CHANGED: ...")) == "host key CHANGED"
    assert problem_kind(SSHError("h", "authentication failed for user 'x' with key k")) == "login refused"
    assert problem_kind(SSHError("h", "h:22 is unreachable (connection refused)")) == "unreachable"


def test_status_shows_an_unknown_host_key_in_its_own_column_with_the_deploy_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    rows = [HostStatus(host="root@h2", health=200), HostStatus.unreadable("root@h1", UNKNOWN)]
    assert render_hosts.status_table(rows, text_env()) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "problem" in out
    assert "unknown host key" in out
    assert "--accept-new-host-key" in out  # the hint deploy gives, word for word
    assert "unreachable" not in out


def test_status_json_carries_the_problem_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    render_hosts.status_table([HostStatus.unreadable("root@h1", UNKNOWN)], json_env())
    import json

    host = json.loads(capsys.readouterr().out)["hosts"][0]
    assert host["problem"] == "unknown host key"
    assert host["hint"] == UNKNOWN.hint


def test_a_preflight_error_names_each_host_once() -> None:
    errors = {"root@h1": str(SSHError("root@h1", "h1:22 is unreachable (connection refused)"))}
    with pytest.raises(PreflightError) as info:
        engine_fleet.raise_for_host_problems(errors, "check the network")
    assert "root@h1: root@h1" not in info.value.message
    assert info.value.message.count("root@h1") == 1
    with pytest.raises(PreflightError) as info:
        engine_fleet.raise_for_host_problems({"root@h2": "no docker compose v2"})
    assert "root@h2: no docker compose v2" in info.value.message


class RecordingConn:
    def __init__(self) -> None:
        self.host = Host("h1")
        self.commands: list[list[str]] = []

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        self.commands.append(argv)
        return CommandResult(0, "", "")


def _op() -> engine.Operation:
    return engine.Operation(
        layout=LAYOUT,
        reporter=RecordingReporter(),
        api_port=3100,
        worker_port=3101,
        health_timeout=5,
        drain_timeout=5,
        stop_timeout=35,
        clock=Clock(),
        cancel=threading.Event(),
        operator="tester@laptop",
    )


@pytest.mark.parametrize(
    ("services", "said"),
    [
        ({}, None),  # a fresh host
        ({"worker": ServiceState("worker", "c2", "exited", "", ImageRecord(image_id="x"))}, None),
        (
            {"worker": ServiceState("worker", "c2", "running", "", ImageRecord(image_id="x"))},
            "stopping worker (up to 35s)",
        ),
    ],
)
def test_stopping_the_worker_is_announced_only_when_one_runs(services: dict[str, Any], said: str | None) -> None:
    op = _op()
    old = ImageRecord(image_id="sha256:" + "a" * 64)
    snapshot = Snapshot(services={"api": ServiceState("api", "c1", "running", "", old), **services})
    engine.switch_to(op, RecordingConn(), snapshot, "reg/gh:new", {})  # type: ignore[arg-type]
    assert isinstance(op.reporter, RecordingReporter)
    stopping = [m for m in op.reporter.messages("step") if m.startswith("stopping")]
    assert stopping == ([said] if said else [])


def test_missing_credentials_are_a_preflight_failure_with_both_ways_to_log_in() -> None:
    from botocore.exceptions import NoCredentialsError

    from ghdeploy.aws.errors import translate_aws_error

    err = translate_aws_error(NoCredentialsError(), "ECR login")
    assert isinstance(err, CredentialsError)
    assert err.exit_code == ExitCode.BAD_INPUT
    assert err.hint and "aws sso login" in err.hint and "AWS_PROFILE" in err.hint and "AWS_ACCESS_KEY_ID" in err.hint
    assert "no aws CLI is needed" in err.hint


PLAN_ITEM: dict[str, Any] = {
    "host": "root@h1",
    "current": {"tag": "v2", "image_id": "sha256:" + "a" * 64},
    "lock": None,
    "rollback_to": {"tag": "v2"},
    "commands": ["docker image inspect x", "env ECR_IMAGE=reg/gh:v3 docker compose up -d", "GET localhost:3100/health"],
    "steps": [
        {"kind": "run", "command": "docker image inspect x", "stdin": False, "changes": False},
        {"kind": "run", "command": "env ECR_IMAGE=reg/gh:v3 docker compose up -d", "stdin": False, "changes": True},
        {"kind": "http", "command": "GET localhost:3100/health", "stdin": False, "changes": False},
    ],
    "summary": [
        "pulling gh:v3",
        "image ready, waiting for the switch",
        "draining worker",
        "stopping worker (up to 35s)",
        "docker compose up -d",
        "waiting for /health (up to 60s)",
    ],
}


def test_the_dry_run_is_a_short_human_plan_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    from ghdeploy.results import DeployReport

    report = DeployReport(tag="v3", plan=[PLAN_ITEM])
    assert render.deploy_report(report, text_env(), "deploy") == 0
    out = capsys.readouterr().out
    assert "runs now: v2" in out and "switches to: v3" in out
    assert "pulls gh:v3" in out
    assert "then: draining worker -> stopping worker (up to 35s) -> docker compose up -d" in out
    assert "if it fails: back to v2" in out
    assert "1 of 3 commands change the host; -v shows them exactly" in out
    assert "$ " not in out and "image ready" not in out

    assert render.deploy_report(report, text_env(verbose=1), "deploy") == 0
    out = capsys.readouterr().out
    assert "$ env ECR_IMAGE=reg/gh:v3 docker compose up -d" in out and "if it fails" in out


def test_the_plan_says_when_the_pull_is_skipped_and_when_there_is_nothing_to_go_back_to() -> None:
    fresh = {**PLAN_ITEM, "current": None, "summary": ["gh:v3 already on host", "docker compose up -d"]}
    plan = render.plan_summary(fresh)
    assert plan["pull"] == "no pull: gh:v3 is already on the host"
    assert plan["now"] == "nothing"
    assert "no earlier image" in plan["failure"]
