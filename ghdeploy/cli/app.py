"""The typer applications (the top level, `lock`, `agent`) and the global options' callback.

The callback puts the run's Environment (made once per invocation by `main`) in `ctx.obj` with the
global options filled in; every command reads it from there (`env_of`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ghdeploy import __version__
from ghdeploy.cli.options import EnvFileOpt, JsonOpt, QuietOpt, VerboseOpt
from ghdeploy.environment import Environment

HELP = """Build, push and deploy GhostHands to EC2 hosts over SSH.

Config comes from flags, then the environment, then .env.deploy (or --env-file).

Exit codes: 0 ok; 1 failed (deploy rolled back, verify mismatch, host unhealthy); 2 bad input or config, nothing touched; 3 a host is locked by another deploy; 130 interrupted.
"""

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rendering it with rich costs ~100 ms of imports, and --help must start fast.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
lock_app = typer.Typer(help="Show or release the per-host deploy locks.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(lock_app, name="lock")
agent_app = typer.Typer(
    help=(
        "On a host: follow AGENT_TAG in the registry and deploy each new digest here (drain, health check, "
        "rollback, history, the host's deploy lock). Exit codes with --once: 0 nothing to do or deployed; "
        "1 failed or rolled back; 3 the host's lock is held by another deploy."
    ),
    rich_markup_mode=None,
)
app.add_typer(agent_app, name="agent")


def env_of(ctx: typer.Context) -> Environment:
    """The run's Environment (one made here when the app is driven without `main`, e.g. by CliRunner)."""
    if not isinstance(ctx.obj, Environment):
        ctx.obj = Environment()
    return ctx.obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ghdeploy {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    env_file: EnvFileOpt = None,
    json_output: JsonOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    env = env_of(ctx)
    env.env_file = env_file
    env.json = json_output
    env.verbose = verbose
    env.quiet = quiet
