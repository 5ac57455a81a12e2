"""The CLI runs in an Environment given to it: a test hands in its own streams, variables and clock,
and everything the run prints (errors, JSON, progress) lands there, not on the process's streams."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ghdeploy import render
from ghdeploy.cli import main
from ghdeploy.environment import Environment


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def captured(**environ: str) -> Environment:
    return Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ=environ)


def text(stream: object) -> str:
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def test_a_refusal_is_written_to_the_given_streams(capsys: pytest.CaptureFixture[str]) -> None:
    env = captured()
    assert main(["--json", "deploy", "--push-only", "--deploy-only"], env) == 2
    doc = json.loads(text(env.stdout))
    assert doc["command"] == "error" and "--push-only" in doc["error"]["message"]
    assert "error: --push-only and --deploy-only exclude each other" in text(env.stderr)
    assert env.json is True  # the global option landed on the run's environment
    assert capsys.readouterr() == ("", "")  # nothing reached the process's own streams


def test_a_usage_error_is_written_to_the_given_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    env = captured()
    assert main(["status", "--no-such-flag"], env) == 2
    assert "No such option: --no-such-flag" in text(env.stderr)
    assert capsys.readouterr() == ("", "")


def test_each_run_gets_its_own_environment() -> None:
    first, second = captured(), captured()
    main(["--json", "-v", "deploy", "--push-only", "--deploy-only"], first)
    main(["deploy", "--push-only", "--deploy-only"], second)
    assert (first.json, first.verbose) == (True, 1)
    assert (second.json, second.verbose) == (False, 0)  # nothing carried over from the first run
    assert text(second.stdout) == ""


def test_colour_follows_the_terminal_and_no_color() -> None:
    tty = Tty()
    assert Environment(stderr=tty, environ={}).colour(tty)
    assert not Environment(stderr=tty, environ={"NO_COLOR": "1"}).colour(tty)
    assert not Environment(stderr=tty, environ={"TERM": "dumb"}).colour(tty)
    assert not Environment(environ={}).colour(io.StringIO())  # a pipe or a file: plain


def test_error_lines_are_coloured_only_on_a_terminal() -> None:
    tty = Tty()
    render.print_error("bad", "fix it", env=Environment(stderr=tty, environ={}))
    assert "\033[1;31merror:\033[0m bad" in tty.getvalue()
    plain = io.StringIO()
    render.print_error("bad", "fix it", env=Environment(stderr=plain, environ={}))
    assert plain.getvalue() == "error: bad\nhint: fix it\n"


def test_progress_lines_use_the_given_clock_and_stderr() -> None:
    now = iter([100.0, 102.5])
    env = Environment(stderr=io.StringIO(), environ={}, clock=lambda: next(now))
    with render.ConsoleReporter(env) as reporter:
        reporter.step("ubuntu@a", "pulling")
    assert text(env.stderr) == "[   2.5s] ubuntu@a: pulling\n"


def test_config_comes_from_the_given_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env.deploy here
    monkeypatch.delenv("EC2_HOST", raising=False)
    monkeypatch.delenv("ASG_NAME", raising=False)
    env = captured(EC2_HOST="ec2-user@10.0.0.5,ec2-user@10.0.0.6")
    assert main(["hosts", "--json"], env) == 0
    doc = json.loads(text(env.stdout))
    assert [h["host"] for h in doc["hosts"]] == ["ec2-user@10.0.0.5", "ec2-user@10.0.0.6"]


def test_notify_reads_its_secret_from_the_given_variables_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOY_WEBHOOK_SECRET", "s" * 32)  # the process has it; the run was not given it
    env = captured(ECR_REGISTRY="123456789012.dkr.ecr.us-east-1.amazonaws.com", AWS_REGION="us-east-1")
    assert main(["notify", "--url", "https://deploy.example.com", "--tag", "v1"], env) == 2
    assert "DEPLOY_WEBHOOK_SECRET" in text(env.stderr)


def test_notify_names_the_commit_from_the_given_github_sha(tmp_path: Path) -> None:
    from ghdeploy.commands.notify import commit_info

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert commit_info(tmp_path, {"GITHUB_SHA": sha}) == (sha, sha[:7], "")
