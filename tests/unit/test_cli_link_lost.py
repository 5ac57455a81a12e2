"""A link that dies under a command is a failure (exit 1), never "aborted"/130.

click turns every EOFError that leaves a command into Abort; paramiko raises a bare EOFError when
a socket write hits a dead link. The CLI tells the two apart: only a real interrupt is 130.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import cli


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str) -> int:
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "deploy.pem"
    key.write_text("not read: nothing connects\n")
    key.chmod(0o600)
    monkeypatch.setenv("EC2_HOST", "u@h1")
    monkeypatch.setenv("EC2_KEY", str(key))
    monkeypatch.setenv("SSH_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    for name in ("ASG_NAME", "SSH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "none.env").write_text("")
    monkeypatch.setattr("ghdeploy.engine.connect.connect_ahead", lambda *a, **k: None)
    return cli.main(["--env-file", str(tmp_path / "none.env"), *argv])


def _raise(exc: BaseException) -> Any:
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fn


def test_a_bare_eoferror_from_a_command_is_a_lost_link_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("ghdeploy.commands.status.status", _raise(EOFError()))
    assert _run(monkeypatch, tmp_path, "status") == 1
    err = capsys.readouterr().err
    assert "SSH connection was lost" in err and "ghdeploy status" in err
    assert "aborted" not in err


def test_with_json_the_lost_link_is_one_error_document(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("ghdeploy.commands.status.status", _raise(EOFError()))
    assert _run(monkeypatch, tmp_path, "--json", "status") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["error"]["exit_code"] == 1


def test_ctrl_c_is_still_interrupted_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("ghdeploy.commands.status.status", _raise(KeyboardInterrupt()))
    assert _run(monkeypatch, tmp_path, "status") == 130
