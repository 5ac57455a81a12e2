"""`logs` and `prune`: day-2 work on a running fleet."""

from typing import Annotated

import typer

from ghdeploy import grammar
from ghdeploy.cli.app import app, env_of
from ghdeploy.cli.options import AcceptOpt, HostOpt, switch, value
from ghdeploy.cli.runtime import finish, host_options, load, reporter


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  ghdeploy logs                          last 200 lines of api and worker on every host, in time order\n"
        "  ghdeploy logs -f --service worker      follow the workers of all hosts (Ctrl-C ends)\n"
        "  ghdeploy logs --since 10m --grep ERROR --host ec2-user@10.0.1.5\n"
        "  ghdeploy logs --service targeted --json one JSON object per line"
    )
)
def logs(
    ctx: typer.Context,
    host: HostOpt = None,
    service: Annotated[
        list[str] | None,
        value(
            "--service",
            "-s",
            metavar="NAME",
            help="api, worker, another compose service, `targeted` (all targeted workers) or a targeted "
            "worker's name; repeatable (default: the compose services).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        value("--since", metavar="WHEN", help="Only lines newer than this: 10m, 2h30m, 2d, or a date/time."),
    ] = None,
    tail: Annotated[
        int | None,
        value(
            "-n",
            "--tail",
            metavar="N",
            parse=grammar.count(0, 1_000_000),
            help="Last N lines of each container (default 200, or all with --since).",
        ),
    ] = None,
    follow: Annotated[bool, switch("-f", "--follow", help="Keep streaming new lines until Ctrl-C.")] = False,
    grep: Annotated[
        str | None, value("--grep", metavar="TEXT", help="Only lines containing TEXT (case-sensitive).")
    ] = None,
    timestamps: Annotated[
        bool, switch("--timestamps", help="Show each line's time as the host's engine recorded it.")
    ] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Container logs from every host at once, each line prefixed with host and service; merged in
    time order, or followed with -f. --json: one JSON object per line (host, service, time, line)."""
    env = env_of(ctx)
    config = load(env, "logs", only=host)  # what status reads: the hosts, SSH, the app directory
    from ghdeploy.commands.logs import LogsOptions, targets
    from ghdeploy.commands.logs import logs as run_logs
    from ghdeploy.render_logs import LogPrinter

    options = LogsOptions(services=service or [], since=since, tail=tail, follow=follow, grep=grep)
    quiet_reporter = LogPrinter([], env=env)
    hosts_to_read = targets(config, host or [], quiet_reporter)
    printer = LogPrinter([h.label for h in hosts_to_read], env=env, timestamps=timestamps, follow=follow)
    try:
        outcome = run_logs(config, hosts_to_read, printer, options, printer, accept_new_host_key=accept_new_host_key)
    finally:
        printer.flush()
    finish(outcome.exit_code)


@app.command(
    epilog=(
        "\b\nWhat stays on each host: the images of the last RETAIN_RELEASES releases in its deploy\n"
        "history (so `rollback` needs no registry) and every image a container uses (running or\n"
        "stopped). What goes: this repository's other images, tagged or dangling. Another\n"
        "application's images are never touched. Every successful deploy does this by itself."
    )
)
def prune(
    ctx: typer.Context,
    host: HostOpt = None,
    dry_run: Annotated[bool, switch("--dry-run", help="Show what would be removed, remove nothing.")] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Remove this repository's old images from every host, keeping what rollback needs."""
    from ghdeploy.config import HOST_KEYS

    env = env_of(ctx)
    config = load(env, (*HOST_KEYS, "ECR_REGISTRY", "ECR_REPOSITORY", "RETAIN_RELEASES"), only=host)
    from ghdeploy import render
    from ghdeploy.commands.prune import prune as run_prune

    with reporter(env) as progress:
        rows = run_prune(config, host_options(host, accept_new_host_key), progress, dry_run=dry_run)
    finish(render.prune_table(rows, env))
