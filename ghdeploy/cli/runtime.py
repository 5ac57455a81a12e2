"""What every command does around its core call: load the config it needs, make the reporter,
turn a result's exit code into typer's exit. All of it reads the run's Environment, never a global.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ghdeploy.environment import Environment

if TYPE_CHECKING:
    from ghdeploy.config import Config
    from ghdeploy.engine.connect import HostOptions
    from ghdeploy.render import ConsoleReporter


def load(
    env: Environment,
    command: str | tuple[str, ...],
    overrides: dict[str, str | None] | None = None,
    flags: dict[str, str] | None = None,
    *,
    only: list[str] | None = None,
) -> Config:
    """Load and validate what `command` needs (a command name from the schema, or key names).

    `overrides` are flag values by key (None: not given); `flags` names the flag of each, so an error
    about the value names the flag the user typed (`--tag`, `--to`), not the key. `only` (--host)
    must name configured hosts; with EC2_HOST that is checked here, before anything else runs.
    Commands call this first and import their heavy modules after it: a refusal stays fast.
    """
    from ghdeploy.config import load_config

    config = load_config(
        command=command if isinstance(command, str) else None,
        needs=None if isinstance(command, str) else command,
        env_file=env.env_file,
        overrides=overrides,
        flag_names=flags,
        environ=env.environ,
    )
    for warning in config.warnings:
        env.stderr.write(f"warning: {warning}\n")
    if only and "EC2_HOST" in config.values and "ASG_NAME" not in config.values:
        from ghdeploy.hosts import narrow

        narrow(config.hosts, only)
    return config


def host_options(host: list[str] | None, accept_new_host_key: bool = False) -> HostOptions:
    """The --host and --accept-new-host-key of a command that connects to hosts."""
    from ghdeploy.engine.connect import HostOptions

    return HostOptions(only=host or [], accept_new_host_key=accept_new_host_key)


def connect_ahead(config: Config, host: list[str] | None, accept_new_host_key: bool) -> HostOptions:
    """The host options of a read-only command, its hosts already being connected to in the
    background (engine/preconnect.py) while the command imports what it shows results with."""
    from ghdeploy.engine.connect import connect_ahead as start

    opts = host_options(host, accept_new_host_key)
    start(config, opts)
    return opts


def reporter(env: Environment) -> ConsoleReporter:
    from ghdeploy.render import ConsoleReporter

    return ConsoleReporter(env)


def finish(code: int) -> None:
    if code:
        raise typer.Exit(code)
