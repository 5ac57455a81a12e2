"""Every typer option more than one command takes, declared once (and the helpers that declare them).

Each alias is the whole declaration: a command writes `host: HostOpt = None`. A flag's value is
checked by its grammar at parse time, so a bad value is click's usage error naming the flag (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ghdeploy import grammar


def flag(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A typer parser from a grammar: its ValueError becomes click's usage error naming the option (exit 2)."""

    def convert(value: Any) -> Any:
        if not isinstance(value, str):  # typer passes defaults through the parser too
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r}: {exc}") from None

    return convert


def value(*names: str, metavar: str, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    """An option that takes a value, checked by `parse` (a grammar function) when there is one."""
    return typer.Option(*names, metavar=metavar, help=help, parser=flag(parse) if parse else None)


def switch(*names: str, help: str) -> Any:
    """An on/off option."""
    return typer.Option(*names, help=help)


# --- the global options (the top-level callback) ----------------------------------------------

EnvFileOpt = Annotated[
    Path | None, value("--env-file", metavar="PATH", help="Config file to read instead of ./.env.deploy.")
]
JsonOpt = Annotated[bool, switch("--json", help="Print one JSON document on stdout, nothing else.")]
VerboseOpt = Annotated[
    int,
    typer.Option("-v", "--verbose", count=True, show_default=False, help="Show the commands run and their output."),
]
QuietOpt = Annotated[bool, switch("-q", "--quiet", help="Only warnings and errors on stderr.")]

# --- the options several commands share ---------------------------------------------------------

HostOpt = Annotated[
    list[str] | None,
    value(
        "--host",
        metavar="HOST",
        parse=grammar.host_name,
        help="Only this host (repeatable); must be one of the configured hosts.",
    ),
]
AcceptOpt = Annotated[
    bool,
    switch(
        "--accept-new-host-key", help="Accept and record the key of a host not yet in known_hosts (check it first)."
    ),
]
TagOpt = Annotated[
    str | None, value("--tag", "-t", metavar="TAG", help="Image tag (default: IMAGE_TAG, else short SHA of HEAD).")
]
PlatformOpt = Annotated[
    str | None,
    value(
        "--platform",
        metavar="PLATFORM",
        parse=grammar.platforms,
        help="Target platform of the build (default GH_PLATFORM, linux/amd64).",
    ),
]
AllowDirtyOpt = Annotated[
    bool, switch("--allow-dirty", help="Build from uncommitted changes; the default tag ends in -dirty.")
]
BatchOpt = Annotated[
    int,
    value(
        "--batch",
        metavar="N",
        parse=grammar.count(1, 1000),
        help="Hosts deployed (or rolled back) at once (default 1: rolling).",
    ),
]
ReasonOpt = Annotated[
    str | None,
    value("--message", "-m", metavar="TEXT", parse=grammar.message, help="Why: kept in the lock and the history."),
]
DryRunOpt = Annotated[bool, switch("--dry-run", help="Resolve and check everything, print the plan, change nothing.")]
