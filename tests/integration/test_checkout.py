"""The integration tests exercise this checkout's code, not whatever ghdeploy the machine has installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ghdeploy
from tests.integration.conftest import REPO


def test_cli_runs_this_checkout(base_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import ghdeploy; print(ghdeploy.__file__)"],
        cwd=tmp_path,
        env=base_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(proc.stdout.strip()).resolve() == (REPO / "ghdeploy" / "__init__.py").resolve()


def test_pytest_imports_this_checkout() -> None:
    assert Path(ghdeploy.__file__).resolve() == (REPO / "ghdeploy" / "__init__.py").resolve()
