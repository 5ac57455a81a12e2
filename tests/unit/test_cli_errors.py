"""The real CLI in a subprocess: user errors exit 2 with a message and no traceback; --json prints one
document; --help and --version work and stay light (no boto3/botocore/paramiko/httpx at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("boto3", "botocore", "paramiko", "httpx")


class CLI:
    """Runs ghdeploy with a minimal environment (PATH, HOME) in a scratch directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        # A docker that records being called: the errors below must come before any docker use.
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.docker_log = tmp_path / "docker-called"
        docker = self.bin / "docker"
        docker.write_text(f'#!/bin/sh\necho "$@" >> "{self.docker_log}"\nexit 1\n')
        docker.chmod(0o755)
        self.env = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "PYTHONPATH": str(REPO_ROOT),
            "GIT_CEILING_DIRECTORIES": str(tmp_path),
        }

    def run(
        self, *args: str, env: dict[str, str] | None = None, python_args: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *python_args, "-m", "ghdeploy", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @property
    def docker_called(self) -> bool:
        return self.docker_log.exists()


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def _flat(text: str) -> str:
    """rich wraps long lines at 80 columns when not on a terminal; compare without the wrapping."""
    return " ".join(text.split())


def _user_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return _flat(result.stderr)


def _one_json(stdout: str) -> dict[str, Any]:
    doc = json.loads(stdout)  # raises on anything but exactly one document
    assert isinstance(doc, dict)
    return doc


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


# --- bad config -----------------------------------------------------------------------------


def test_build_without_config_exits_2_with_the_problem(cli: CLI) -> None:
    result = cli.run("build")
    err = _user_error(result)
    assert "error:" in err
    assert "ECR_REGISTRY" in err
    assert "hint:" in err
    assert result.stdout == ""  # errors go to stderr only
    assert not cli.docker_called


def test_json_build_without_config_prints_one_error_document(cli: CLI) -> None:
    result = cli.run("--json", "build")
    err = _user_error(result)
    assert "error:" in err and "ECR_REGISTRY" in err
    doc = _one_json(result.stdout)
    assert doc["version"] == 1
    assert doc["ok"] is False
    assert doc["error"]["exit_code"] == 2
    assert doc["error"]["type"] == "ConfigError"
    assert "ECR_REGISTRY" in doc["error"]["message"]


def test_json_deploy_names_every_missing_key(cli: CLI) -> None:
    result = cli.run("--json", "deploy")
    err = _user_error(result)
    doc = _one_json(result.stdout)
    assert doc["ok"] is False and "version" in doc
    for key in ("ECR_REGISTRY", "AWS_REGION", "EC2_HOST", "EC2_KEY"):
        assert key in err, key
        assert key in doc["error"]["message"], key


def test_bad_values_in_env_deploy_are_all_reported(cli: CLI) -> None:
    (cli.cwd / ".env.deploy").write_text(
        "ECR_REGISTRY=123456789012.dkr.ecr.us-east-1.amazonaws.com\n"
        "AWS_REGION=us-east-1\n"
        "EC2_HOST=ubuntu@host:99999\n"
        f"EC2_KEY={cli.home}/missing.pem\n"
        "IMAGE_TAG=-bad\n"
        "HEALTH_TIMEOUT=soon\n"
        "GH_ENVIRONMENT=prod\n"
    )
    result = cli.run("--json", "deploy", "--deploy-only")
    err = _user_error(result)
    message = _one_json(result.stdout)["error"]["message"]
    for key in ("EC2_HOST", "EC2_KEY", "IMAGE_TAG", "HEALTH_TIMEOUT", "GH_ENVIRONMENT"):
        assert key in err and key in message, key
    assert ".env.deploy" in err  # says which file was read


def test_missing_env_file_exits_2(cli: CLI) -> None:
    result = cli.run("--env-file", str(cli.cwd / "nope.env"), "build", env={"ECR_REGISTRY": "r.example.com"})
    err = _user_error(result)
    assert "nope.env" in err


@pytest.mark.parametrize("command", [["push"], ["status"], ["verify"], ["history"], ["rollback"], ["lock", "status"]])
def test_other_commands_without_config_exit_2(cli: CLI, command: list[str]) -> None:
    result = cli.run("--json", *command)
    assert "error:" in _user_error(result)
    assert _one_json(result.stdout)["ok"] is False


def test_push_only_and_deploy_only_exclude_each_other(cli: CLI) -> None:
    result = cli.run("deploy", "--push-only", "--deploy-only")
    err = _user_error(result)
    assert "--push-only" in err and "--deploy-only" in err
    json_result = cli.run("--json", "deploy", "--push-only", "--deploy-only")
    _user_error(json_result)
    assert _one_json(json_result.stdout)["ok"] is False


# --- git state ------------------------------------------------------------------------------

REGISTRY_ENV = {"ECR_REGISTRY": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "ECR_REPOSITORY": "ghosthands"}


def test_dirty_repo_refuses_to_build_before_docker(cli: CLI) -> None:
    (cli.cwd / "Dockerfile").write_text("FROM scratch\n")
    _git(cli.cwd, "init", "-q")
    _git(cli.cwd, "add", "Dockerfile")
    _git(cli.cwd, "commit", "-q", "-m", "init")
    (cli.cwd / "notes.txt").write_text("uncommitted\n")
    result = cli.run("build", env=REGISTRY_ENV)
    err = _user_error(result)
    assert "uncommitted" in err
    assert "notes.txt" in err
    assert "--allow-dirty" in err
    assert not cli.docker_called


def test_modified_tracked_file_is_dirty_too(cli: CLI) -> None:
    (cli.cwd / "Dockerfile").write_text("FROM scratch\n")
    _git(cli.cwd, "init", "-q")
    _git(cli.cwd, "add", "Dockerfile")
    _git(cli.cwd, "commit", "-q", "-m", "init")
    (cli.cwd / "Dockerfile").write_text("FROM scratch\nLABEL x=y\n")
    result = cli.run("--json", "build", env=REGISTRY_ENV)
    assert "uncommitted" in _user_error(result)
    assert _one_json(result.stdout)["error"]["exit_code"] == 2
    assert not cli.docker_called


def test_not_a_git_repo_exits_2(cli: CLI) -> None:
    (cli.cwd / "Dockerfile").write_text("FROM scratch\n")
    result = cli.run("build", env=REGISTRY_ENV)
    err = _user_error(result)
    assert "not a git repository" in err
    assert not cli.docker_called


def test_repo_without_dockerfile_exits_2(cli: CLI) -> None:
    (cli.cwd / "README").write_text("x\n")
    _git(cli.cwd, "init", "-q")
    _git(cli.cwd, "add", "README")
    _git(cli.cwd, "commit", "-q", "-m", "init")
    result = cli.run("build", env=REGISTRY_ENV)
    assert "Dockerfile" in _user_error(result)
    assert not cli.docker_called


# --- usage errors: exit 2, never a traceback --------------------------------------------------


def test_unknown_command_is_a_usage_error(cli: CLI) -> None:
    result = cli.run("frobnicate")
    assert "frobnicate" in _user_error(result)


def test_bad_option_value_is_a_usage_error(cli: CLI) -> None:
    result = cli.run("deploy", "--batch", "0")
    assert "batch" in _user_error(result)


@pytest.mark.parametrize(
    "args",
    [["--json", "deploy", "--batch", "0"], ["--json", "frobnicate"], ["deploy", "--batch", "0", "--json"]],
    ids=str,
)
def test_usage_error_with_json_prints_one_error_document(cli: CLI, args: list[str]) -> None:
    result = cli.run(*args)
    _user_error(result)
    doc = _one_json(result.stdout)
    assert (doc["version"], doc["command"], doc["ok"]) == (1, "error", False)
    assert doc["error"]["type"] == "UsageError" and doc["error"]["exit_code"] == 2
    assert doc["error"]["message"] and doc["error"]["hint"]


def test_unknown_option_is_a_usage_error(cli: CLI) -> None:
    result = cli.run("build", "--no-such-flag")
    assert "no-such-flag" in _user_error(result)


def test_no_arguments_shows_usage_without_traceback(cli: CLI) -> None:
    result = cli.run()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 2)
    assert "Usage" in result.stdout + result.stderr


# --- help and version -----------------------------------------------------------------------


def test_version(cli: CLI) -> None:
    result = cli.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ghdeploy {__version__}"


def test_console_script_help(cli: CLI) -> None:
    script = Path(sys.executable).parent / "ghdeploy"
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    result = subprocess.run(
        [str(script), "--help"], cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for command in ("build", "push", "deploy", "status", "verify", "rollback"):
        assert command in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.parametrize("command", ["build", "push", "deploy", "status", "verify", "rollback", "history"])
def test_subcommand_help(cli: CLI, command: str) -> None:
    result = cli.run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_help_imports_no_heavy_module(cli: CLI) -> None:
    result = cli.run("--help", python_args=("-X", "importtime"))
    assert result.returncode == 0
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    roots = {m.split(".")[0] for m in modules}
    assert "typer" in roots and "ghdeploy" in roots  # the parse found real imports
    assert not roots & set(HEAVY), sorted(m for m in modules if m.split(".")[0] in HEAVY)
