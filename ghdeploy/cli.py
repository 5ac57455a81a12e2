"""Command-line interface: parse, load config, call one core function, render, return an exit code.

Only typer and the standard library are imported at module level; everything heavy (rich tables,
boto3, paramiko, httpx) is imported when a command runs, so `ghdeploy --help` starts fast.
"""

from __future__ import annotations

import copy
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ghdeploy import __version__, grammar
from ghdeploy.errors import ConfigError, ExitCode, GhdeployError, Interrupted

if TYPE_CHECKING:
    from ghdeploy.config import Config
    from ghdeploy.engine.connect import HostOptions
    from ghdeploy.render import ConsoleReporter
    from ghdeploy.waiting import CancelToken

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


@dataclass
class Globals:
    env_file: Path | None = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False


STATE = Globals()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ghdeploy {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Config file to read instead of ./.env.deploy.", metavar="PATH")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option("-v", "--verbose", count=True, show_default=False, help="Show the commands run and their output."),
    ] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    STATE.env_file = env_file
    STATE.json = json_output
    STATE.verbose = verbose
    STATE.quiet = quiet


# --- shared plumbing ------------------------------------------------------------------------


def _config(
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

    if isinstance(command, str):
        config = load_config(command=command, env_file=STATE.env_file, overrides=overrides, flag_names=flags)
    else:
        config = load_config(needs=command, env_file=STATE.env_file, overrides=overrides, flag_names=flags)
    for warning in config.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    if only and "EC2_HOST" in config.values and "ASG_NAME" not in config.values:
        from ghdeploy.hosts import narrow

        narrow(config.hosts, only)
    return config


def _flag(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A typer parser from a grammar: its ValueError becomes click's usage error naming the option (exit 2)."""

    def convert(value: Any) -> Any:
        if not isinstance(value, str):  # typer passes defaults through the parser too
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r}: {exc}") from None

    return convert


def _ahead(config: Config, host: list[str] | None, accept_new_host_key: bool) -> HostOptions:
    """The host options of a read-only command, its hosts already being connected to in the
    background (engine/preconnect.py) while the command imports what it shows results with."""
    from ghdeploy.engine.connect import HostOptions, connect_ahead

    opts = HostOptions(only=host or [], accept_new_host_key=accept_new_host_key)
    connect_ahead(config, opts)
    return opts


def _reporter() -> ConsoleReporter:
    from ghdeploy.render import ConsoleReporter

    return ConsoleReporter(verbose=STATE.verbose, quiet=STATE.quiet)


def _finish(code: int) -> None:
    if code:
        raise typer.Exit(code)


class _Signals:
    """While in use, SIGINT/SIGTERM call `_handle` (which sets `event`); the old handlers come back after."""

    def __init__(self, reporter: ConsoleReporter, event: threading.Event) -> None:
        self.event = event
        self.reporter = reporter
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> Any:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Interrupts(_Signals):
    """SIGINT/SIGTERM set an event the deploy checks at safe points, instead of killing it mid-switch."""

    event: CancelToken

    def __init__(self, reporter: ConsoleReporter) -> None:
        from ghdeploy.waiting import CancelToken

        super().__init__(reporter, CancelToken())

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.armed:
            # Building, pushing or checking: no host has been changed yet, so stop right away.
            self.event.set()
            raise Interrupted(
                f"{signal.Signals(signum).name}: interrupted before any host was changed",
                "nothing to clean up; run the command again when ready",
            )
        if not self.event.is_set():
            self.reporter.warn(
                f"{signal.Signals(signum).name}: stopping at the next safe point; a host mid-switch is rolled back"
            )
        else:
            self.reporter.warn("still finishing the rollback so no host is left half-deployed; please wait")
        self.event.set()

    def __enter__(self) -> CancelToken:
        super().__enter__()
        return self.event


HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        metavar="HOST",
        parser=_flag(grammar.host_name),
        help="Only this host (repeatable); must be one of the configured hosts.",
    ),
]
AcceptOpt = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-key", help="Accept and record the key of a host not yet in known_hosts (check it first)."
    ),
]
TagOpt = Annotated[
    str | None,
    typer.Option("--tag", "-t", metavar="TAG", help="Image tag (default: IMAGE_TAG, else short SHA of HEAD)."),
]


# --- build / push ---------------------------------------------------------------------------


@app.command()
def build(
    tag: TagOpt = None,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform",
            metavar="PLATFORM",
            parser=_flag(grammar.platforms),
            help="Target platform (default GH_PLATFORM, linux/amd64).",
        ),
    ] = None,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Build from uncommitted changes; the default tag ends in -dirty.")
    ] = False,
) -> None:
    """Build the image from ./Dockerfile with COMMIT_SHA, BUILD_TIME, IMAGE_TAG; tag :TAG and :latest."""
    config = _config(
        "build", {"IMAGE_TAG": tag, "GH_PLATFORM": platform}, {"IMAGE_TAG": "--tag", "GH_PLATFORM": "--platform"}
    )
    from ghdeploy import render
    from ghdeploy.commands.build import build as run_build

    with _reporter() as reporter:
        outcome = run_build(config, Path.cwd(), reporter, tag=tag, platform=platform, allow_dirty=allow_dirty)
    render.build_result(outcome, STATE.json)


@app.command()
def push(tag: TagOpt = None) -> None:
    """Log in to ECR (token from boto3, on stdin) and push :TAG and :latest."""
    config = _config("push", {"IMAGE_TAG": tag}, {"IMAGE_TAG": "--tag"})
    from ghdeploy import render
    from ghdeploy.commands.push import push as run_push

    with _reporter() as reporter:
        outcome = run_push(config, Path.cwd(), reporter, tag=tag)
    render.push_result(outcome, STATE.json)


# --- deploy / rollback ----------------------------------------------------------------------


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  ghdeploy deploy --dry-run                 what would happen on each host (-v: the exact commands)\n"
        "  ghdeploy deploy -m 'fix login'            build, push, deploy every host, verify\n"
        "  ghdeploy deploy --deploy-only --tag 1a2b3c4 --host ec2-user@10.0.1.5\n"
        "\b\nA host whose new image fails its health check is rolled back to the exact image it ran\n"
        "before, and the rollout stops there. Ctrl-C is safe: a host mid-switch is rolled back."
    )
)
def deploy(
    tag: TagOpt = None,
    push_only: Annotated[bool, typer.Option("--push-only", help="Build and push, touch no host.")] = False,
    deploy_only: Annotated[
        bool, typer.Option("--deploy-only", help="Skip build and push; the tag must be in the registry.")
    ] = False,
    host: HostOpt = None,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            metavar="N",
            parser=_flag(grammar.count(1, 1000)),
            help="Hosts deployed at once (default 1: rolling).",
        ),
    ] = 1,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve and check everything, print the plan, change nothing.")
    ] = False,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            "-m",
            metavar="TEXT",
            parser=_flag(grammar.message),
            help="Why: kept in the lock and the history.",
        ),
    ] = None,
    accept_new_host_key: AcceptOpt = False,
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="Build from uncommitted changes.")] = False,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform", metavar="PLATFORM", parser=_flag(grammar.platforms), help="Target platform for the build."
        ),
    ] = None,
) -> None:
    """Build, push, deploy every host (one at a time), then verify. Rolls a failed host back."""
    if push_only and deploy_only:
        raise ConfigError(
            "--push-only and --deploy-only exclude each other", "pick one, or neither for the whole pipeline"
        )
    mode = "push-only" if push_only else "deploy-only" if deploy_only else "full"
    config = _config(
        "push" if push_only else "deploy",
        {"IMAGE_TAG": tag, "GH_PLATFORM": platform},
        {"IMAGE_TAG": "--tag", "GH_PLATFORM": "--platform"},
        only=host,
    )
    from ghdeploy import render
    from ghdeploy.commands.deploy import deploy as run_deploy
    from ghdeploy.engine.connect import HostOptions

    with _reporter() as reporter, _Interrupts(reporter) as cancel:
        report = run_deploy(
            config,
            Path.cwd(),
            reporter,
            cancel,
            tag=tag,
            mode=mode,
            allow_dirty=allow_dirty,
            platform=platform,
            hosts_opts=HostOptions(only=host or [], accept_new_host_key=accept_new_host_key),
            batch=batch,
            dry_run=dry_run,
            message=message,
        )
    _finish(render.deploy_report(report, STATE.json, "deploy", STATE.verbose))


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  ghdeploy rollback --dry-run       which image each host would go back to\n"
        "  ghdeploy rollback -m 'bad release'\n"
        "  ghdeploy rollback --to 1a2b3c4    a tag that is in the registry"
    )
)
def rollback(
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="TAG", help="Tag to go back to (default: the image before the last deploy)."),
    ] = None,
    host: HostOpt = None,
    batch: Annotated[
        int,
        typer.Option("--batch", metavar="N", parser=_flag(grammar.count(1, 1000)), help="Hosts rolled back at once."),
    ] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    message: Annotated[
        str | None,
        typer.Option(
            "--message", "-m", metavar="TEXT", parser=_flag(grammar.message), help="Why: kept in the lock and history."
        ),
    ] = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Put back the image that ran before the last deploy (from each host's history), or --to TAG."""
    # --to '' is a mistake, not "no --to": it is checked as the tag it claims to be.
    config = (
        _config("rollback --to", {"IMAGE_TAG": to}, {"IMAGE_TAG": "--to"}, only=host)
        if to is not None
        else _config("rollback", only=host)
    )
    from ghdeploy import render
    from ghdeploy.commands.rollback import rollback as run_rollback
    from ghdeploy.engine.connect import HostOptions

    with _reporter() as reporter, _Interrupts(reporter) as cancel:
        report = run_rollback(
            config,
            reporter,
            cancel,
            to_tag=to,
            hosts_opts=HostOptions(only=host or [], accept_new_host_key=accept_new_host_key),
            batch=batch,
            dry_run=dry_run,
            message=message,
        )
    _finish(render.deploy_report(report, STATE.json, "rollback", STATE.verbose))


# --- read-only ------------------------------------------------------------------------------


@app.command()
def hosts(host: HostOpt = None) -> None:
    """List the hosts commands would work on, in deploy order (finds ASG_NAME's instances). Connects to none."""
    config = _config("hosts", only=host)
    from ghdeploy import render_hosts
    from ghdeploy.commands.hosts import hosts as run_hosts
    from ghdeploy.engine.connect import HostOptions

    with _reporter() as reporter:
        found, notes = run_hosts(config, HostOptions(only=host or []), reporter)
    source = f"ASG {config.asg_name}" if config.asg_name else "EC2_HOST"
    _finish(render_hosts.hosts_list(found, notes, source, STATE.json))


@app.command()
def status(host: HostOpt = None, accept_new_host_key: AcceptOpt = False) -> None:
    """Per host: services, image, health, worker state, version, last deploy (all hosts at once)."""
    config = _config("status", only=host)
    opts = _ahead(config, host, accept_new_host_key)
    from ghdeploy import render_hosts
    from ghdeploy.commands.status import status as run_status

    with _reporter() as reporter:
        rows = run_status(config, opts, reporter)
    _finish(render_hosts.status_table(rows, STATE.json))


@app.command()
def verify(
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            metavar="SHA",
            parser=_flag(grammar.commit_sha),
            help="Commit SHA to expect (default: full SHA of local HEAD).",
        ),
    ] = None,
    host: HostOpt = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Compare /health/version's commit_sha on every host with local HEAD (or --expect)."""
    config = _config("verify", only=host)
    from ghdeploy.commands.verify import expected_commit
    from ghdeploy.commands.verify import verify as run_verify

    expected = expected_commit(Path.cwd(), expect)  # a bad --expect or no git checkout: refused before connecting
    opts = _ahead(config, host, accept_new_host_key)
    from ghdeploy import render_hosts

    with _reporter() as reporter:
        rows = run_verify(config, Path.cwd(), opts, reporter, expected)
    _finish(render_hosts.verify_table(rows, STATE.json))


@app.command()
def history(
    n: Annotated[
        int,
        typer.Option("-n", "--limit", metavar="N", parser=_flag(grammar.count(1, 100000)), help="Records per host."),
    ] = 10,
    host: HostOpt = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """The deploy and rollback records kept on each host, newest last."""
    config = _config("history", only=host)
    opts = _ahead(config, host, accept_new_host_key)
    from ghdeploy import render_hosts
    from ghdeploy.commands.history import history as run_history

    with _reporter() as reporter:
        rows = run_history(config, opts, reporter, n)
    _finish(render_hosts.history_table(rows, STATE.json))


@lock_app.command("status")
def lock_status(host: HostOpt = None, accept_new_host_key: AcceptOpt = False) -> None:
    """Show who holds each host's deploy lock, since when, and why."""
    config = _config("lock", only=host)
    opts = _ahead(config, host, accept_new_host_key)
    from ghdeploy import render_hosts
    from ghdeploy.commands.lock import lock_status as run_lock_status

    with _reporter() as reporter:
        rows = run_lock_status(config, opts, reporter)
    _finish(render_hosts.lock_table(rows, STATE.json, "lock status"))


@lock_app.command("release")
def lock_release(
    host: HostOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Free the deploy lock of the hosts (only when the deploy holding it is really gone)."""
    config = _config("lock", only=host)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("lock release needs confirmation", "pass --yes when not at a terminal")
        targets = ", ".join(host) if host else "every configured host"
        if not typer.confirm(
            f"Release the deploy lock on {targets}? A deploy still running there loses it", default=False
        ):
            raise typer.Exit(1)
    from ghdeploy import render_hosts
    from ghdeploy.commands.lock import lock_release as run_lock_release
    from ghdeploy.engine.connect import HostOptions

    with _reporter() as reporter:
        rows = run_lock_release(config, HostOptions(only=host or [], accept_new_host_key=accept_new_host_key), reporter)
    _finish(render_hosts.lock_table(rows, STATE.json, "lock release"))


# --- agent ----------------------------------------------------------------------------------


class _AgentSignals(_Signals):
    """SIGTERM/SIGINT only ask the agent to stop: it finishes (or rolls back) a deploy first."""

    def __init__(self, reporter: ConsoleReporter) -> None:
        super().__init__(reporter, threading.Event())

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            self.reporter.warn(f"{name}: still stopping; a deploy under way finishes or rolls back first")
        else:
            self.reporter.warn(f"{name}: stopping at the next safe point")
        self.event.set()


@agent_app.callback(
    invoke_without_command=True,
    epilog=(
        "\b\nExamples (on the host, usually as the systemd unit contrib/ghdeploy-agent.service):\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent            poll every AGENT_INTERVAL seconds\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent --once --json\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent init-table  create AGENT_FLEET_TABLE"
    ),
)
def agent(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Poll once, deploy if needed, then exit.")] = False,
    interval: Annotated[
        int | None,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            parser=_flag(grammar.seconds(grammar.AGENT_MIN_INTERVAL, 86400)),
            help="Seconds between polls (default AGENT_INTERVAL, 60).",
        ),
    ] = None,
) -> None:
    """Follow AGENT_TAG and keep this host on its newest good digest."""
    if ctx.invoked_subcommand is not None:
        return
    config = _config(
        "agent", {"AGENT_INTERVAL": str(interval) if interval is not None else None}, {"AGENT_INTERVAL": "--interval"}
    )
    from ghdeploy import render
    from ghdeploy.commands import agent as agent_cmd

    reporter = _reporter()
    reporter.live_mode = False  # a service's log: plain lines, never a live display
    with reporter, _AgentSignals(reporter) as cancel:
        runner = agent_cmd.build_agent(config, reporter, cancel)
        if once:
            outcome: dict[str, Any] = {}
            runner.run(lambda kind, data: outcome.update(data) if kind == "poll" else None, once=True)
            _finish(render.agent_once(outcome, STATE.json))
            return
        code = runner.run(lambda kind, data: render.agent_event(kind, data, STATE.json), once=False)
    _finish(code)


@agent_app.command("init-table")
def agent_init_table() -> None:
    """Create the DynamoDB table AGENT_FLEET_TABLE that coordinates the fleet's agents (idempotent)."""
    config = _config(("AWS_REGION", "AGENT_FLEET_TABLE"))
    from ghdeploy import render
    from ghdeploy.commands import agent as agent_cmd

    _finish(render.agent_table_result(agent_cmd.init_table(config), STATE.json))


# --- webhook receiver and sender -----------------------------------------------------------


@app.command(
    epilog=(
        "\b\nNeeds the server extra: pip install 'ghdeploy[server]'. Keys (environment or env file, never flags):\n"
        "  DEPLOY_WEBHOOK_SECRET, DEPLOY_API_TOKEN (required), DATABASE_URL (default ./ghdeploy-serve.db),\n"
        "  DEPLOY_CALLBACK_URL, WEBHOOK_MAX_AGE (300 s), plus the deploy keys (EC2_HOST, EC2_KEY, ECR_*, ...).\n"
        "Put it behind TLS (a reverse proxy or load balancer). SIGTERM: stops taking webhooks and lets a\n"
        "running deploy reach a safe point (a host mid-switch is rolled back)."
    )
)
def serve(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            parser=_flag(grammar.listen_address),
            help="Address to listen on (plain HTTP).",
        ),
    ] = "127.0.0.1:8080",
) -> None:
    """Webhook receiver: CI's signed deploy_ready -> fleet deploy (one at a time), recorded, reported back."""
    from ghdeploy.commands import serve as serve_command

    serve_command.require_extra()
    config = _config("serve")
    _finish(serve_command.serve(config, Path.cwd(), listen, verbose=STATE.verbose, quiet=STATE.quiet))


@app.command(
    epilog=(
        "\b\nThe one line for CI (after the image is pushed):\n"
        '  ghdeploy notify --url https://deploy.example.com --tag "$IMAGE_TAG" --wait\n'
        "Signs with DEPLOY_WEBHOOK_SECRET; --wait reads the deploy with DEPLOY_API_TOKEN (both from the\n"
        "environment). Exit 0 accepted (and, with --wait, succeeded); 1 refused or failed; 2 bad input."
    )
)
def notify(
    url: Annotated[
        str,
        typer.Option(
            "--url", metavar="URL", parser=_flag(grammar.http_url), help="The receiver (base URL or the webhook URL)."
        ),
    ],
    tag: TagOpt = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            metavar="ENV",
            parser=_flag(grammar.choice(*grammar.COMPOSE_FILES)),
            help="Target environment (default GH_ENVIRONMENT).",
        ),
    ] = None,
    message: Annotated[
        str | None,
        typer.Option(
            "--message", "-m", metavar="TEXT", parser=_flag(grammar.message), help="Commit message (default: HEAD's)."
        ),
    ] = None,
    run_url: Annotated[
        str | None,
        typer.Option(
            "--run-url",
            metavar="URL",
            parser=_flag(grammar.http_url),
            help="CI run URL (default: from GITHUB_* variables).",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the deploy; exit 0 only if it succeeded.")] = False,
) -> None:
    """CI side: sign and send deploy_ready to `ghdeploy serve` (replaces CI's curl)."""
    config = _config("notify --wait" if wait else "notify", {"IMAGE_TAG": tag}, {"IMAGE_TAG": "--tag"})
    from ghdeploy import render
    from ghdeploy.commands import notify as notify_command
    from ghdeploy.server.settings import resolve

    keys = resolve(config, ("DEPLOY_WEBHOOK_SECRET", "DEPLOY_API_TOKEN") if wait else ("DEPLOY_WEBHOOK_SECRET",))
    with _reporter() as reporter:
        outcome = notify_command.notify(
            config,
            Path.cwd(),
            reporter,
            url=url,
            secret=keys["DEPLOY_WEBHOOK_SECRET"],
            token=keys.get("DEPLOY_API_TOKEN"),
            tag=tag,
            environment=environment,
            message=message,
            run_url=run_url,
            wait=wait,
        )
    _finish(render.notify_result(outcome, STATE.json))


# --- logs (day-2) -----------------------------------------------------------------------------


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
    host: HostOpt = None,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            metavar="NAME",
            help="api, worker, another compose service, `targeted` (all targeted workers) or a targeted "
            "worker's name; repeatable (default: the compose services).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Only lines newer than this: 10m, 2h30m, 2d, or a date/time."),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--tail",
            metavar="N",
            parser=_flag(grammar.count(0, 1_000_000)),
            help="Last N lines of each container (default 200, or all with --since).",
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep streaming new lines until Ctrl-C.")] = False,
    grep: Annotated[
        str | None, typer.Option("--grep", metavar="TEXT", help="Only lines containing TEXT (case-sensitive).")
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="Show each line's time as the host's engine recorded it.")
    ] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Container logs from every host at once, each line prefixed with host and service; merged in
    time order, or followed with -f. --json: one JSON object per line (host, service, time, line)."""
    config = _config("logs", only=host)  # what status reads: the hosts, SSH, the app directory
    from ghdeploy.commands.logs import LogsOptions, targets
    from ghdeploy.commands.logs import logs as run_logs
    from ghdeploy.render_logs import LogPrinter

    options = LogsOptions(services=service or [], since=since, tail=tail, follow=follow, grep=grep)
    quiet_reporter = LogPrinter([], verbose=STATE.verbose, quiet=STATE.quiet)
    hosts_to_read = targets(config, host or [], quiet_reporter)
    printer = LogPrinter(
        [h.label for h in hosts_to_read],
        as_json=STATE.json,
        timestamps=timestamps,
        follow=follow,
        verbose=STATE.verbose,
        quiet=STATE.quiet,
    )
    try:
        outcome = run_logs(config, hosts_to_read, printer, options, printer, accept_new_host_key=accept_new_host_key)
    finally:
        printer.flush()
    _finish(outcome.exit_code)


@app.command(
    epilog=(
        "\b\nWhat stays on each host: the images of the last RETAIN_RELEASES releases in its deploy\n"
        "history (so `rollback` needs no registry) and every image a container uses (running or\n"
        "stopped). What goes: this repository's other images, tagged or dangling. Another\n"
        "application's images are never touched. Every successful deploy does this by itself."
    )
)
def prune(
    host: HostOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed, remove nothing.")] = False,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Remove this repository's old images from every host, keeping what rollback needs."""
    from ghdeploy.config import HOST_KEYS

    config = _config((*HOST_KEYS, "ECR_REGISTRY", "ECR_REPOSITORY", "RETAIN_RELEASES"), only=host)
    from ghdeploy import render
    from ghdeploy.commands.prune import prune as run_prune
    from ghdeploy.engine.fleet import HostOptions

    with _reporter() as reporter:
        rows = run_prune(
            config, HostOptions(only=host or [], accept_new_host_key=accept_new_host_key), reporter, dry_run=dry_run
        )
    _finish(render.prune_table(rows, STATE.json))


# --- the one boundary -----------------------------------------------------------------------


def _click_exceptions() -> Any:
    """The exceptions module of the click that typer runs on (typer >= 0.20 vendors its own copy)."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer that uses the click package
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


# Global flags that may also be written after the command (`ghdeploy status --json`).
_GLOBAL_FLAGS = {"--json", "-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"}


def value_options(command: Any) -> set[str]:
    """The options of a click command tree that take a value: the word after one is its value,
    never a global flag. Read from the tree itself, so a new option needs no list kept by hand."""
    found: set[str] = set()
    stack = [command]
    while stack:
        current = stack.pop()
        for param in getattr(current, "params", []):
            if getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count:
                found.update(param.opts)
                found.update(param.secondary_opts)
        stack.extend(getattr(current, "commands", {}).values())
    return found


# Global options that take a value (`ghdeploy status --env-file staging.env`).
_GLOBAL_VALUE_OPTIONS = {"--env-file"}
GLOBAL_OPTIONS_HELP = (
    "\b\nGlobal options (before or after the command):\n"
    "  --env-file PATH   config file to read instead of ./.env.deploy\n"
    "  --json            one JSON document on stdout, nothing else\n"
    "  -v, --verbose     show each command run on a host as it runs\n"
    "  -q, --quiet       only warnings and errors on stderr"
)


def hoist_global_flags(args: list[str], takes_value: set[str] | None = None) -> list[str]:
    """Move global options written after the command to the front, where click expects them."""
    if takes_value is None:
        takes_value = value_options(_click_command(args))
    front: list[str] = []
    rest: list[str] = []
    previous = ""
    take_value = False
    for i, arg in enumerate(args):
        if take_value:  # the value of a global option moves with it
            front.append(arg)
            take_value = False
        elif arg == "--":
            rest += args[i:]
            break
        elif previous in takes_value:
            rest.append(arg)
        elif arg in _GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in _GLOBAL_VALUE_OPTIONS)):
            front.append(arg)
        elif arg in _GLOBAL_VALUE_OPTIONS:
            front.append(arg)
            take_value = True
        else:
            rest.append(arg)
        previous = arg
    return front + rest


def _command_name(args: list[str]) -> str | None:
    """The command a command line runs, or None when it runs none (--help, --version, nothing)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--help", "-h", "--version", "--"):
            return None
        elif arg == "--env-file":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _click_command(args: list[str]) -> Any:
    """The click command tree for this command line: only the command it runs, when it names one.

    typer builds every command's parameters (it reads each signature and its annotations) when
    the tree is made: ~30 ms on every run, growing with each command added. A run needs one. An
    unknown name gets the full tree, so click's "No such command" lists them all.
    """
    name = _command_name(args)
    commands = [c for c in app.registered_commands if name is not None and _registered_name(c) == name]
    groups = [g for g in app.registered_groups if name is not None and g.name == name]
    if not commands and not groups:
        return typer.main.get_command(app)
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return typer.main.get_command(only)


def _registered_name(command: Any) -> str:
    return command.name or command.callback.__name__.lower().replace("_", "-")


def _list_global_options(group: Any) -> None:
    """Every subcommand's --help lists the global options it accepts."""
    for sub in getattr(group, "commands", {}).values():
        if GLOBAL_OPTIONS_HELP not in (sub.epilog or ""):
            sub.epilog = f"{sub.epilog}\n{GLOBAL_OPTIONS_HELP}" if sub.epilog else GLOBAL_OPTIONS_HELP
        _list_global_options(sub)


def _link_lost(cause: EOFError) -> int:
    from ghdeploy import render_errors
    from ghdeploy.errors import OperationFailed

    error = OperationFailed(
        f"an SSH connection was lost ({cause or 'connection closed'}) and the command could not finish",
        "run `ghdeploy status`: a host a deploy or rollback was changing heals itself (its guardian "
        "puts the recorded image back and frees the lock); then re-run",
    )
    if STATE.json:
        render_errors.error_json(error)
    render_errors.print_error(error.message, error.hint)
    return int(error.exit_code)


def main(argv: list[str] | None = None) -> int:
    click = _click_exceptions()
    given = sys.argv[1:] if argv is None else list(argv)
    command = _click_command(given)  # global options after the command do not change which one it is
    args = hoist_global_flags(given, value_options(command))
    _list_global_options(command)
    try:
        result = command.main(args=args, prog_name="ghdeploy", standalone_mode=False)
    except GhdeployError as exc:
        from ghdeploy import render_errors

        if STATE.json:
            render_errors.error_json(exc)
        render_errors.print_error(exc.message, exc.hint, getattr(exc, "problems", None))
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):
            # click turns ANY EOFError from a command into Abort (a prompt's own EOF is raised
            # `from None`). From a command's body it is paramiko's bare EOFError of a link that
            # died: a failure, never an interrupt (exit 130 would tell a script Ctrl-C was pressed).
            return _link_lost(exc.__cause__)
        sys.stderr.write("aborted\n")
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        if exc.exit_code and (STATE.json or "--json" in args):
            from ghdeploy import render_errors
            from ghdeploy.errors import UsageError

            # --json promises one document on stdout, for a mistyped command line too.
            render_errors.error_json(
                UsageError(exc.format_message(), "see `ghdeploy --help` or `ghdeploy COMMAND --help`")
            )
        return int(ExitCode.BAD_INPUT) if exc.exit_code else 0
    except EOFError:
        sys.stderr.write("no answer on standard input\n")
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    return result if isinstance(result, int) else 0
