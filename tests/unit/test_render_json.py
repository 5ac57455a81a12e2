"""ghdeploy.render: the one JSON document, exit codes derived from results, and plain-text output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ghdeploy import __version__, render, render_hosts
from ghdeploy.commands.history import HostHistory
from ghdeploy.commands.lock import HostLock
from ghdeploy.environment import Environment
from ghdeploy.errors import ConfigError, ExitCode, HostKeyError, OperationFailed
from ghdeploy.hostops import ImageRecord
from ghdeploy.images import BuildOutcome, PushOutcome
from ghdeploy.records import LockInfo
from ghdeploy.results import Action, DeployReport, FleetResult, HostResult, Result, Target
from ghdeploy.status import HostStatus
from ghdeploy.version_check import VerifyRow

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ghosthands"
SHA = "0123456789abcdef0123456789abcdef01234567"


def json_env() -> Environment:
    """A run with --json, on the streams pytest captures now."""
    return Environment(json=True)


def text_env(verbose: int = 0) -> Environment:
    return Environment(verbose=verbose)


def _one_json(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # fails on anything but exactly one document
    assert isinstance(doc, dict)
    assert doc["version"] == render.JSON_SCHEMA_VERSION
    assert doc["ghdeploy"] == __version__
    assert list(doc)[:3] == ["version", "ghdeploy", "command"]
    return doc, captured.err


def _target() -> Target:
    return Target(ref=f"{REPO}@sha256:{'e' * 64}", label="ghosthands:v2", digest=f"sha256:{'e' * 64}")


def _host(label: str, result: str, **kw: Any) -> HostResult:
    return HostResult(
        host=label,
        result=Result(result),
        from_image=ImageRecord(image_id="sha256:" + "1" * 64, ref=f"{REPO}:v1"),
        target=_target(),
        phases={"pull": 1.23456, "health": 0.4},
        duration=3.21,
        **kw,
    )


# --- errors ---------------------------------------------------------------------------------


def test_error_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    exc = ConfigError(["ECR_REGISTRY is not set", "EC2_KEY is not set"], "set them in .env.deploy")
    render.error_json(exc)
    doc, err = _one_json(capsys)
    assert doc["command"] == "error"
    assert doc["ok"] is False
    assert doc["error"] == {
        "message": "ECR_REGISTRY is not set; EC2_KEY is not set",
        "hint": "set them in .env.deploy",
        "exit_code": 2,
        "type": "ConfigError",
    }
    assert err == ""


def test_error_json_exit_codes_follow_the_error_class(capsys: pytest.CaptureFixture[str]) -> None:
    render.error_json(OperationFailed("boom"))
    assert _one_json(capsys)[0]["error"]["exit_code"] == ExitCode.FAILED
    render.error_json(HostKeyError("ubuntu@h", "host key changed", "ssh-keygen -R h"))
    doc, _ = _one_json(capsys)
    assert doc["error"]["exit_code"] == ExitCode.BAD_INPUT
    assert doc["error"]["message"] == "ubuntu@h: host key changed"


def test_print_error_goes_to_stderr_literally(capsys: pytest.CaptureFixture[str]) -> None:
    render.print_error("tag [bold]x[/bold] is bad", "try [red]y[/red]")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: tag [bold]x[/bold] is bad" in captured.err  # rich markup in messages is not interpreted
    assert "hint: try [red]y[/red]" in captured.err


# --- build / push ---------------------------------------------------------------------------


def test_build_result_json(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = BuildOutcome(
        tag="abc1234",
        image=REPO,
        image_id="sha256:" + "2" * 64,
        commit_sha=SHA,
        build_time="2024-05-01T10:00:00Z",
        refs=[f"{REPO}:abc1234", f"{REPO}:latest"],
        dirty=False,
        seconds=12.5,
    )
    assert render.build_result(outcome, json_env()) == 0
    doc, _ = _one_json(capsys)
    assert doc["command"] == "build"
    assert doc["ok"] is True
    assert doc["tag"] == "abc1234"
    assert doc["commit_sha"] == SHA
    assert doc["refs"] == [f"{REPO}:abc1234", f"{REPO}:latest"]
    assert doc["dirty"] is False


def test_build_result_human(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = BuildOutcome("t1", REPO, "sha256:" + "2" * 64, SHA, "now", [f"{REPO}:t1", f"{REPO}:latest"], True)
    render.build_result(outcome, text_env())
    out = capsys.readouterr().out
    assert f"built {REPO}:t1" in " ".join(out.split())
    assert SHA in out
    assert "dirty" in out


def test_push_result_json(capsys: pytest.CaptureFixture[str]) -> None:
    outcome = PushOutcome(tag="v2", image=REPO, digest="sha256:" + "e" * 64, refs=[f"{REPO}:v2", f"{REPO}:latest"])
    assert render.push_result(outcome, json_env()) == 0
    doc, _ = _one_json(capsys)
    assert (doc["command"], doc["ok"], doc["digest"]) == ("push", True, "sha256:" + "e" * 64)


# --- deploy reports -------------------------------------------------------------------------


def test_deploy_report_success(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = FleetResult(Action.DEPLOY, _target(), [_host("ubuntu@a", "succeeded"), _host("ubuntu@b", "succeeded")])
    report = DeployReport(tag="v2", fleet=fleet, verify=[VerifyRow("ubuntu@a", SHA, running=SHA)])
    assert render.deploy_report(report, json_env(), "deploy") == 0
    doc, _ = _one_json(capsys)
    assert (doc["command"], doc["ok"], doc["exit_code"], doc["tag"]) == ("deploy", True, 0, "v2")
    deploy = doc["deploy"]
    assert deploy["succeeded"] is True
    assert deploy["summary"] == {
        "total": 2,
        "succeeded": 2,
        "rolled back": 0,
        "rollback failed": 0,
        "failed": 0,
        "untouched": 0,
        "abandoned": 0,
        "unconfirmed": 0,
    }
    first = deploy["hosts"][0]
    assert first["host"] == "ubuntu@a"
    assert first["succeeded"] is True
    assert first["from"]["tag"] == "v1"
    assert first["to"]["label"] == "ghosthands:v2"
    assert first["phases"] == {"pull": 1.235, "health": 0.4}
    assert doc["verify"] == [
        {
            "host": "ubuntu@a",
            "ok": True,
            "expected": SHA,
            "running": SHA,
            "image_tag": None,
            "build_time": None,
            "error": None,
        }
    ]


def test_deploy_report_rolled_back_fails(capsys: pytest.CaptureFixture[str]) -> None:
    hosts = [
        _host("ubuntu@a", "succeeded"),
        _host("ubuntu@b", "rolled back", error="health check failed"),
        HostResult(host="ubuntu@c"),
    ]
    report = DeployReport(tag="v2", fleet=FleetResult(Action.DEPLOY, _target(), hosts))
    assert render.deploy_report(report, json_env(), "deploy") == ExitCode.FAILED
    doc, _ = _one_json(capsys)
    assert (doc["ok"], doc["exit_code"]) == (False, 1)
    assert [h["result"] for h in doc["deploy"]["hosts"]] == ["succeeded", "rolled back", "untouched"]
    assert doc["deploy"]["summary"]["rolled back"] == 1
    assert doc["deploy"]["summary"]["untouched"] == 1


def test_deploy_report_interrupted_is_130(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = FleetResult(Action.DEPLOY, _target(), [_host("ubuntu@a", "succeeded")], interrupted=True)
    assert render.deploy_report(DeployReport(tag="v2", fleet=fleet), json_env(), "deploy") == ExitCode.INTERRUPTED
    doc, _ = _one_json(capsys)
    assert doc["exit_code"] == 130 and doc["ok"] is False


def test_deploy_report_verify_mismatch_fails_a_good_deploy(capsys: pytest.CaptureFixture[str]) -> None:
    fleet = FleetResult(Action.DEPLOY, _target(), [_host("ubuntu@a", "succeeded")])
    verify = [VerifyRow("ubuntu@a", SHA, running="f" * 40)]
    assert render.deploy_report(DeployReport(tag="v2", fleet=fleet, verify=verify), json_env(), "deploy") == 1
    doc, _ = _one_json(capsys)
    assert doc["verify"][0]["ok"] is False
    assert doc["deploy"]["succeeded"] is True
    assert doc["ok"] is False


def test_deploy_report_empty_fleet_is_not_success(capsys: pytest.CaptureFixture[str]) -> None:
    report = DeployReport(tag="v2", fleet=FleetResult(Action.DEPLOY, _target(), []))
    assert render.deploy_report(report, json_env(), "deploy") == 1
    capsys.readouterr()


def test_deploy_report_push_only(capsys: pytest.CaptureFixture[str]) -> None:
    push = PushOutcome(tag="v2", image=REPO, digest="sha256:" + "e" * 64, refs=[f"{REPO}:v2"])
    assert render.deploy_report(DeployReport(tag="v2", push=push), json_env(), "deploy") == 0
    doc, _ = _one_json(capsys)
    assert doc["push"]["digest"] == "sha256:" + "e" * 64
    assert doc["deploy"] is None and doc["verify"] is None


def test_deploy_report_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    hosts = [_host("ubuntu@a", "succeeded"), _host("ubuntu@b", "rolled back", error="health check failed")]
    code = render.deploy_report(
        DeployReport(tag="v2", fleet=FleetResult(Action.DEPLOY, _target(), hosts)), text_env(), "deploy"
    )
    assert code == 1
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert "ubuntu@a" in out and "ubuntu@b" in out
    assert "rolled back" in out
    assert "total 2: 1 succeeded, 1 rolled back" in out
    assert "next:" in captured.err and "rolled back" in captured.err
    assert "next:" not in captured.out


def test_dry_run_plan_prints_commands_literally(capsys: pytest.CaptureFixture[str]) -> None:
    plan = [
        {
            "host": "ubuntu@a",
            "current": {"tag": "v1"},
            "lock": None,
            "commands": ["docker compose up -d", "echo '[red]not markup[/red]'"],
        }
    ]
    # -v: the exact commands (by default a short human plan, see test_messages.py)
    assert render.deploy_report(DeployReport(tag="v2", plan=plan), text_env(verbose=1), "deploy") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "nothing was changed" in out
    assert "$ docker compose up -d" in out
    assert "[red]not markup[/red]" in out


# --- read-only tables -----------------------------------------------------------------------


def test_status_json(capsys: pytest.CaptureFixture[str]) -> None:
    good = HostStatus(host="ubuntu@a", health=200)
    assert render_hosts.status_table([good], json_env()) == 0
    doc, _ = _one_json(capsys)
    assert doc["command"] == "status" and doc["ok"] is True
    assert doc["hosts"][0]["host"] == "ubuntu@a" and doc["hosts"][0]["ok"] is True

    down = HostStatus(host="ubuntu@b", error="ubuntu@b: connection refused")
    unfinished = HostStatus(host="ubuntu@c", health=200, pending={"action": "deploy"})
    assert render_hosts.status_table([good, down, unfinished], json_env()) == 1
    doc, _ = _one_json(capsys)
    assert [h["ok"] for h in doc["hosts"]] == [True, False, False]
    assert doc["hosts"][2]["unfinished_deploy"] == {"action": "deploy"}


def test_status_with_no_hosts_is_not_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_hosts.status_table([], json_env()) == 1
    assert _one_json(capsys)[0]["ok"] is False


def test_verify_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [VerifyRow("ubuntu@a", SHA[:7], running=SHA), VerifyRow("ubuntu@b", SHA[:7], error="unreachable")]
    assert render_hosts.verify_table(rows, json_env()) == 1
    doc, _ = _one_json(capsys)
    assert [h["ok"] for h in doc["hosts"]] == [True, False]
    assert render_hosts.verify_table(rows[:1], json_env()) == 0
    capsys.readouterr()


def test_verify_too_short_expectation_does_not_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_hosts.verify_table([VerifyRow("ubuntu@a", "012", running=SHA)], json_env()) == 1
    capsys.readouterr()


def test_history_and_lock_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [HostHistory("ubuntu@a", records=[{"action": "deploy", "result": "succeeded"}])]
    assert render_hosts.history_table(rows, json_env()) == 0
    doc, _ = _one_json(capsys)
    assert doc["hosts"] == [
        {"host": "ubuntu@a", "records": [{"action": "deploy", "result": "succeeded"}], "error": None, "warnings": []}
    ]
    locks = [
        HostLock("ubuntu@a", holder=LockInfo(operator="alice", present=frozenset({"operator"}))),
        HostLock("ubuntu@b", error="timeout"),
    ]
    assert render_hosts.lock_table(locks, json_env(), "lock status") == 1
    doc, _ = _one_json(capsys)
    assert doc["command"] == "lock status"
    assert doc["hosts"][0]["holder"] == {"operator": "alice"}


# --- the progress reporter ------------------------------------------------------------------


def test_reporter_plain_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with render.ConsoleReporter() as reporter:
        reporter.step("ubuntu@a", "pulling")
        reporter.step("ubuntu@a", "pulling")  # repeated: shown once
        reporter.info("note [x]")
        reporter.warn("careful")
        reporter.debug("hidden without -v")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert sum("ubuntu@a: pulling" in line for line in lines) == 1
    assert any(line.endswith("note [x]") for line in lines)
    assert "warning: careful" in lines
    assert "hidden" not in captured.err
    assert "\x1b[" not in captured.err  # no colour codes when not a terminal


def test_reporter_quiet_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    with render.ConsoleReporter(quiet=True) as reporter:
        reporter.step(None, "building")
        reporter.info("built")
        reporter.warn("dirty tree")
    assert capsys.readouterr().err.splitlines() == ["warning: dirty tree"]
    with render.ConsoleReporter(verbose=1) as reporter:
        reporter.debug("$ docker compose ps")
    assert "$ docker compose ps" in capsys.readouterr().err


# --- odd data from a host never crashes the output --------------------------------------------

ODD = "[/] [bold]x[/bold] [link=file:///etc]y"


def test_human_output_survives_markup_and_wrong_types_from_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    from ghdeploy import hostdata
    from ghdeploy.hostops import parse_history

    fleet = FleetResult(Action.DEPLOY, _target(), [_host(f"ubuntu@{ODD}", "succeeded", notes=[ODD])])
    report = DeployReport(tag="v2", fleet=fleet, verify=[VerifyRow("ubuntu@a", SHA, running=f"{SHA}{ODD}")])
    assert render.deploy_report(report, text_env(), "deploy") == 0  # printed literally, not a crash
    assert ODD in capsys.readouterr().out.replace("\n", "")

    records, warnings = parse_history(
        json.dumps({"time": 5, "action": ["x"], "from": "v1", "to": {"label": 7}, "duration_s": "3", "operator": ODD})
        + "\n{half-writ\n"
    )
    assert len(records) == 1 and len(warnings) == 1 and "line 2" in warnings[0]
    assert render_hosts.history_table([HostHistory("ubuntu@a", records=records)], text_env()) == 0
    holder = LockInfo.from_dict(hostdata.record({"operator": ODD, "since": 12, "action": None, "tag": ["v"]}))
    assert render_hosts.lock_table([HostLock("ubuntu@a", holder=holder)], text_env(), "lock status") == 0
    status = HostStatus(
        host="ubuntu@a",
        health=200,
        version=hostdata.version({"commit_sha": 12345, "uptime_ms": "long", "build_time": ODD}),
        worker=hostdata.worker({"status": ODD, "deploy_safe": "yes"}),
        pending=hostdata.record({"action": ODD, "time": 3}),
        lock=LockInfo.from_dict(hostdata.record({"operator": ODD})),
        services=[{"service": "api", "state": ODD, "tag": ODD, "image_id": "sha256:1"}],
        targeted=[{"name": ODD, "tag": ODD, "running": True, "worker": {"status": ODD}}],
    )
    assert render_hosts.status_table([status], text_env()) == 1
    out = capsys.readouterr().out
    assert "UNFINISHED" in out and "[/]" in out
