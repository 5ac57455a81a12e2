"""Global flags may follow the command: `ghdeploy status --json` means `ghdeploy --json status`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ghdeploy.cli import _click_command, hoist_global_flags, value_options

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_global_flags_after_the_command_move_to_the_front() -> None:
    assert hoist_global_flags(["status", "--json"]) == ["--json", "status"]
    assert hoist_global_flags(["deploy", "-v", "--tag", "abc", "-q"]) == ["-v", "-q", "deploy", "--tag", "abc"]
    assert hoist_global_flags(["lock", "status", "--json"]) == ["--json", "lock", "status"]


def test_a_value_that_looks_like_a_flag_stays_a_value() -> None:
    assert hoist_global_flags(["deploy", "-m", "-v", "--json"]) == ["--json", "deploy", "-m", "-v"]
    assert hoist_global_flags(["deploy", "--message", "--json"]) == ["deploy", "--message", "--json"]


def test_the_options_that_take_a_value_come_from_the_command_tree() -> None:
    every = value_options(_click_command([]))
    assert {"--env-file", "--tag", "-m", "--message", "--host", "--batch", "--to", "-n", "--expect"} <= every
    assert not every & {"--json", "-v", "--verbose", "-q", "--dry-run", "--push-only", "--yes", "-y"}
    assert value_options(_click_command(["rollback"])) >= {"--to", "--env-file"}


def test_nothing_moves_past_a_double_dash() -> None:
    assert hoist_global_flags(["status", "--", "--json"]) == ["status", "--", "--json"]


def test_json_after_the_command_gives_one_document(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ghdeploy", "hosts", "--json"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),  # this checkout, not whatever is installed
            "EC2_HOST": "ec2-user@10.0.0.5,ec2-user@10.0.0.6",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["version"] == 1 and [h["host"] for h in doc["hosts"]] == ["ec2-user@10.0.0.5", "ec2-user@10.0.0.6"]


def test_deploy_only_outside_a_checkout_asks_for_a_tag(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not used: the command stops before any connection\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "AWS_REGION": "us-east-1",
        "EC2_HOST": "ec2-user@10.0.0.5",
        "EC2_KEY": str(key),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ghdeploy", "deploy", "--deploy-only"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pass --tag" in proc.stderr and "Traceback" not in proc.stderr


def test_env_file_may_follow_the_command_too() -> None:
    assert hoist_global_flags(["status", "--env-file", "s.env"]) == ["--env-file", "s.env", "status"]
    assert hoist_global_flags(["lock", "status", "--env-file=s.env", "--json"]) == [
        "--env-file=s.env",
        "--json",
        "lock",
        "status",
    ]
    assert hoist_global_flags(["--env-file", "a.env", "status"]) == ["--env-file", "a.env", "status"]
    # the value of another option is never taken for a global option
    assert hoist_global_flags(["deploy", "-m", "--env-file"]) == ["deploy", "-m", "--env-file"]
    # a value that looks like a flag still goes with --env-file
    assert hoist_global_flags(["status", "--env-file", "--json"]) == ["--env-file", "--json", "status"]


@pytest.mark.parametrize("argv", [["status"], ["deploy"], ["lock", "release"], ["agent", "init-table"], ["verify"]])
def test_every_subcommand_help_lists_the_global_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from ghdeploy.cli import main

    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--env-file PATH", "--json", "-v, --verbose", "-q, --quiet", "before or after the command"):
        assert option in out, (argv, option)
