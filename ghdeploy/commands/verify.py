"""`ghdeploy verify`: /health/version's commit on every host against local HEAD or --expect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions
from ghdeploy.errors import ConfigError, LocalToolError
from ghdeploy.gitinfo import git_state, git_toplevel
from ghdeploy.progress import Reporter
from ghdeploy.version_check import VerifyRow, verify_host


@dataclass(frozen=True)
class Expected:
    sha: str
    source: str  # "--expect" or "HEAD of <checkout>"
    note: str | None = None


def expected_commit(cwd: Path, expect: str | None) -> Expected:
    """What the hosts should run: --expect, else local HEAD. Raises ConfigError before any connect."""
    if expect:
        expected = expect.strip().lower()
        if not (7 <= len(expected) <= 40 and all(c in "0123456789abcdef" for c in expected)):
            raise ConfigError(f"--expect {expect!r} is not a commit SHA (7 to 40 hex digits)")
        return Expected(expected, "--expect")
    try:
        sha = git_state(cwd).sha
    except LocalToolError as exc:
        # verify needs no checkout when told what to expect: say so instead of the build's hint.
        raise LocalToolError(
            exc.message, "run ghdeploy verify in the app's git checkout, or pass --expect SHA"
        ) from None
    top = git_toplevel(cwd)
    note = None
    if not (top / "Dockerfile").is_file():
        # Comparing the hosts with some other repository's HEAD fails on every host for nothing.
        note = (
            f"{top} has no Dockerfile: is it the app's checkout? Run ghdeploy in the app's checkout, "
            "or pass --expect SHA"
        )
    return Expected(sha, f"HEAD of {top}", note)


def verify(
    config: Config, cwd: Path, opts: HostOptions, reporter: Reporter, expect: str | Expected | None
) -> list[VerifyRow]:
    want = expect if isinstance(expect, Expected) else expected_commit(cwd, expect)
    expected, source, note = want.sha, want.source, want.note
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
