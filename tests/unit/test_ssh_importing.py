"""paramiko is imported without invoke unless the ssh config may need `Match exec`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ghdeploy.transports.ssh.importing import config_needs_invoke

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "needed"),
    [
        ("Host *\n  User root\n", False),
        ("Host 10.77.*\n  IdentityFile ~/.ssh/id\n  # Match exec is only in this comment\n", False),
        ('Match exec "test -f /tmp/x"\n  User a\n', True),
        ('  match host a exec "true"\n', True),
        ("Include ~/.ssh/config.d/*\n", True),
    ],
)
def test_config_needs_invoke(text: str, needed: bool) -> None:
    assert config_needs_invoke(text) is needed


def _imported_after_connect_prelude(config: Path | None) -> str:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ghdeploy.transports.ssh.importing import import_paramiko\n"
        f"import_paramiko({None if config is None else repr(str(config))} and Path({str(config)!r}))\n"
        "import paramiko\n"
        "print('invoke' in sys.modules, paramiko.config.invoke is not None)\n"
        "import invoke\n"  # still importable afterwards by anyone who wants it
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.strip()


def test_paramiko_without_invoke_for_a_plain_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n  User root\n")
    assert _imported_after_connect_prelude(config) == "False False"
    assert _imported_after_connect_prelude(None) == "False False"


def test_paramiko_with_invoke_when_the_config_has_match_exec(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text('Match exec "true"\n  User root\n')
    assert _imported_after_connect_prelude(config) == "True True"
