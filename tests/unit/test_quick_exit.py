"""The console entry (ghdeploy.cli.run): read-only commands, help and refused input end without
Python's interpreter teardown, with every byte of output written; everything else exits normally."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ghdeploy.cli import boundary

REPO = Path(__file__).resolve().parents[2]


class QuickExit(Exception):
    pass


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []

    def fake_exit(code: int) -> None:
        seen.append(code)
        raise QuickExit()

    monkeypatch.setattr(os, "_exit", fake_exit)
    return seen


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int) -> None:
    monkeypatch.setattr(sys, "argv", ["ghdeploy", *argv])
    monkeypatch.setattr(boundary, "main", lambda args: code)
    boundary.run()


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["verify", "--expect", "abcdef1"], 1), (["--json", "status"], 0), (["--help"], 0), (["deploy"], 2)],
)
def test_read_only_help_and_refused_input_end_at_once(
    monkeypatch: pytest.MonkeyPatch, exits: list[int], argv: list[str], code: int
) -> None:
    with pytest.raises(QuickExit):
        _run(monkeypatch, argv, code)
    assert exits == [code]


@pytest.mark.parametrize("argv", [["deploy"], ["serve"], ["agent"], ["rollback"]])
def test_commands_that_change_or_run_long_exit_the_normal_way(
    monkeypatch: pytest.MonkeyPatch, exits: list[int], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        _run(monkeypatch, argv, 0)
    assert ended.value.code == 0 and exits == []


def test_a_thread_still_working_gets_the_normal_exit(monkeypatch: pytest.MonkeyPatch, exits: list[int]) -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, daemon=False)
    worker.start()
    try:
        with pytest.raises(SystemExit):
            _run(monkeypatch, ["status"], 0)
        assert exits == []
    finally:
        release.set()
        worker.join()


def test_the_real_process_writes_all_its_output(tmp_path: Path) -> None:
    """Through a pipe (block-buffered stdout), the whole help and a whole refusal arrive."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    helped = subprocess.run([sys.executable, "-m", "ghdeploy", "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0
    assert "Commands:" in helped.stdout and "agent" in helped.stdout.splitlines()[-1]
    refused = subprocess.run(
        [sys.executable, "-m", "ghdeploy", "--json", "verify", "--expect", "xyz"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert refused.stdout.strip().startswith("{") and refused.stdout.strip().endswith("}")
