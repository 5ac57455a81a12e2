"""`ghdeploy verify`: /health/version's commit on every host against local HEAD or --expect."""

from __future__ import annotations

from pathlib import Path

from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions
from ghdeploy.errors import ConfigError
from ghdeploy.gitinfo import git_state
from ghdeploy.progress import Reporter
from ghdeploy.version_check import VerifyRow, verify_host


def verify(config: Config, cwd: Path, opts: HostOptions, reporter: Reporter, expect: str | None) -> list[VerifyRow]:
    if expect:
        expected = expect.strip().lower()
        if not (7 <= len(expected) <= 40 and all(c in "0123456789abcdef" for c in expected)):
            raise ConfigError(f"--expect {expect!r} is not a commit SHA (7 to 40 hex digits)")
    else:
        expected = git_state(cwd).sha
    api = config.number("GH_API_PORT")
    return per_host(
        config,
        opts,
        reporter,
        lambda conn: verify_host(conn, api, expected),
        lambda label, exc: VerifyRow(host=label, expected=expected, error=str(exc)),
    )
