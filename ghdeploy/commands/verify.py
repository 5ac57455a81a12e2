"""`ghdeploy verify`: /health/version's commit on every host against local HEAD or --expect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions
from ghdeploy.errors import ConfigError
from ghdeploy.gitinfo import git_state, git_toplevel
from ghdeploy.progress import Reporter
from ghdeploy.version_check import VerifyRow, verify_host


def verify(config: Config, cwd: Path, opts: HostOptions, reporter: Reporter, expect: str | None) -> list[VerifyRow]:
    note: str | None = None
    if expect:
        expected = expect.strip().lower()
        if not (7 <= len(expected) <= 40 and all(c in "0123456789abcdef" for c in expected)):
            raise ConfigError(f"--expect {expect!r} is not a commit SHA (7 to 40 hex digits)")
        source = "--expect"
    else:
        expected = git_state(cwd).sha
        top = git_toplevel(cwd)
        source = f"HEAD of {top}"
        if not (top / "Dockerfile").is_file():
            # Comparing the hosts with some other repository's HEAD fails on every host for nothing.
            note = (
                f"{top} has no Dockerfile: is it the app's checkout? Run ghdeploy in the app's checkout, "
                "or pass --expect SHA"
            )
    api = config.number("GH_API_PORT")

    def checked(conn: Any) -> VerifyRow:
        row = verify_host(conn, api, expected)
        row.expected_from, row.note = source, note
        return row

    return per_host(
        config,
        opts,
        reporter,
        checked,
        lambda label, exc: VerifyRow(host=label, expected=expected, error=str(exc), expected_from=source, note=note),
    )
