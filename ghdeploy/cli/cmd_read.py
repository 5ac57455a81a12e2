"""`hosts`, `status`, `verify`, `history`, `lock status`, `lock release`: read the fleet (and free a lock)."""

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer

from ghdeploy import grammar
from ghdeploy.cli.app import app, env_of, lock_app
from ghdeploy.cli.options import AcceptOpt, HostOpt, switch, value
from ghdeploy.cli.runtime import connect_ahead, finish, host_options, load, reporter
from ghdeploy.errors import ConfigError


@app.command()
def hosts(ctx: typer.Context, host: HostOpt = None) -> None:
    """List the hosts commands would work on, in deploy order (finds ASG_NAME's instances). Connects to none."""
    env = env_of(ctx)
    config = load(env, "hosts", only=host)
    from ghdeploy import render_hosts
    from ghdeploy.commands.hosts import hosts as run_hosts

    with reporter(env) as progress:
        found, notes = run_hosts(config, host_options(host), progress)
    source = f"ASG {config.asg_name}" if config.asg_name else "EC2_HOST"
    finish(render_hosts.hosts_list(found, notes, source, env))


def _read(ctx: typer.Context, command: str, reader: str, host: list[str] | None, accept: bool, *args: Any) -> list[Any]:
    """A read-only command's body: load its config, start connecting to its hosts, import `reader`
    (module.function) meanwhile, and read every host with it; the caller renders the rows."""
    env = env_of(ctx)
    config = load(env, command, only=host)
    opts = connect_ahead(config, host, accept)
    importlib.import_module("ghdeploy.render_hosts")  # the tables, imported while the hosts connect
    module, name = reader.rsplit(".", 1)
    run = getattr(importlib.import_module(module), name)
    with reporter(env) as progress:
        rows: list[Any] = run(config, opts, progress, *args)
    return rows


@app.command()
def status(ctx: typer.Context, host: HostOpt = None, accept_new_host_key: AcceptOpt = False) -> None:
    """Per host: services, image, health, worker state, version, last deploy (all hosts at once)."""
    rows = _read(ctx, "status", "ghdeploy.commands.status.status", host, accept_new_host_key)
    from ghdeploy import render_hosts

    finish(render_hosts.status_table(rows, env_of(ctx)))


@app.command()
def verify(
    ctx: typer.Context,
    expect: Annotated[
        str | None,
        value(
            "--expect",
            metavar="SHA",
            parse=grammar.commit_sha,
            help="Commit SHA to expect (default: full SHA of local HEAD).",
        ),
    ] = None,
    host: HostOpt = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Compare /health/version's commit_sha on every host with local HEAD (or --expect)."""
    env = env_of(ctx)
    config = load(env, "verify", only=host)
    from ghdeploy.commands.verify import expected_commit
    from ghdeploy.commands.verify import verify as run_verify

    expected = expected_commit(Path.cwd(), expect)  # a bad --expect or no git checkout: refused before connecting
    opts = connect_ahead(config, host, accept_new_host_key)
    from ghdeploy import render_hosts

    with reporter(env) as progress:
        rows = run_verify(config, Path.cwd(), opts, progress, expected)
    finish(render_hosts.verify_table(rows, env))


@app.command()
def history(
    ctx: typer.Context,
    n: Annotated[
        int, value("-n", "--limit", metavar="N", parse=grammar.count(1, 100000), help="Records per host.")
    ] = 10,
    host: HostOpt = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """The deploy and rollback records kept on each host, newest last."""
    rows = _read(ctx, "history", "ghdeploy.commands.history.history", host, accept_new_host_key, n)
    from ghdeploy import render_hosts

    finish(render_hosts.history_table(rows, env_of(ctx)))


@lock_app.command("status")
def lock_status(ctx: typer.Context, host: HostOpt = None, accept_new_host_key: AcceptOpt = False) -> None:
    """Show who holds each host's deploy lock, since when, and why."""
    rows = _read(ctx, "lock", "ghdeploy.commands.lock.lock_status", host, accept_new_host_key)
    from ghdeploy import render_hosts

    finish(render_hosts.lock_table(rows, env_of(ctx), "lock status"))


@lock_app.command("release")
def lock_release(
    ctx: typer.Context,
    host: HostOpt = None,
    yes: Annotated[bool, switch("--yes", "-y", help="Do not ask for confirmation.")] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Free the deploy lock of the hosts (only when the deploy holding it is really gone)."""
    env = env_of(ctx)
    config = load(env, "lock", only=host)
    if not yes:
        if not env.stdin_isatty:
            raise ConfigError("lock release needs confirmation", "pass --yes when not at a terminal")
        targets = ", ".join(host) if host else "every configured host"
        if not typer.confirm(
            f"Release the deploy lock on {targets}? A deploy still running there loses it", default=False
        ):
            raise typer.Exit(1)
    from ghdeploy import render_hosts
    from ghdeploy.commands.lock import lock_release as run_lock_release

    with reporter(env) as progress:
        rows = run_lock_release(config, host_options(host, accept_new_host_key), progress)
    finish(render_hosts.lock_table(rows, env, "lock release"))
