"""What each command does, end to end, as functions that return data.

The CLI parses flags, loads config, calls one of these and renders what it returns.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghdeploy import hostops, locks, registry
from ghdeploy import remote_commands as rc
from ghdeploy.config import Config
from ghdeploy.deploy import (
    FleetResult,
    Operation,
    Target,
    close_all,
    connect_all,
    preflight_hosts,
    raise_for_host_problems,
    rolling,
)
from ghdeploy.errors import ConfigError, GhdeployError, LocalToolError, PreflightError
from ghdeploy.gitinfo import git_state
from ghdeploy.hosts import Host, discover_asg, narrow
from ghdeploy.images import (
    BuildOutcome,
    PushOutcome,
    build_image,
    default_tag,
    planned_build,
    push_image,
    validate_tag,
)
from ghdeploy.progress import Reporter
from ghdeploy.status import HostStatus, VerifyRow, host_status, verify_host
from ghdeploy.waiting import CancelToken

if TYPE_CHECKING:
    from ghdeploy.ssh import Connection, SSHSettings


@dataclass
class HostOptions:
    only: list[str] = field(default_factory=list)  # --host
    accept_new_host_key: bool = False


def layout_of(config: Config) -> rc.RemoteLayout:
    return rc.RemoteLayout(app_dir=config.text("GHOSTHANDS_DIR").rstrip("/") or "/", compose_file=config.compose_file)


def ssh_settings(config: Config, accept_new: bool) -> SSHSettings:
    from ghdeploy.ssh import SSHSettings

    ssh_config = config.path("SSH_CONFIG") if config.get("SSH_CONFIG") else None
    return SSHSettings(
        key_file=config.path("EC2_KEY") if config.get("EC2_KEY") else None,
        known_hosts=config.path("SSH_KNOWN_HOSTS"),
        accept_new_host_key=accept_new,
        ssh_config=ssh_config if ssh_config and ssh_config.is_file() else None,
    )


def resolve_hosts(config: Config, opts: HostOptions, reporter: Reporter) -> list[Host]:
    hosts, _ = resolve_hosts_with_notes(config, opts, reporter)
    return hosts


def resolve_hosts_with_notes(config: Config, opts: HostOptions, reporter: Reporter) -> tuple[list[Host], list[str]]:
    """The hosts to work on, in order (EC2_HOST or the ASG's InService instances, narrowed by --host)."""
    notes: list[str] = []
    if config.get("ASG_NAME"):
        name = config.text("ASG_NAME")
        reporter.step(None, f"finding the instances of Auto Scaling Group {name}")
        hosts, notes = discover_asg(
            name, config.text("AWS_REGION"), config.text("SSH_ADDRESS"), config.text("SSH_USER")
        )
        for note in notes:
            reporter.warn(f"ASG {name}: {note}")
        if not hosts:
            raise ConfigError(
                f"Auto Scaling Group {name} has no InService instance with a {config.text('SSH_ADDRESS')} address"
            )
        reporter.info(f"ASG {name}: {len(hosts)} host(s): {', '.join(h.label for h in hosts)}")
    else:
        hosts = config.hosts
    return narrow(hosts, opts.only), notes


def operation(config: Config, reporter: Reporter, cancel: threading.Event, message: str | None) -> Operation:
    return Operation(
        layout=layout_of(config),
        reporter=reporter,
        api_port=config.number("GH_API_PORT"),
        worker_port=config.number("GH_WORKER_PORT"),
        health_timeout=config.number("HEALTH_TIMEOUT"),
        drain_timeout=config.number("DRAIN_TIMEOUT"),
        stop_timeout=config.number("STOP_TIMEOUT"),
        cancel=cancel,
        message=message,
    )


# --- deploy ---------------------------------------------------------------------------------


@dataclass
class DeployReport:
    tag: str
    build: BuildOutcome | None = None
    push: PushOutcome | None = None
    fleet: FleetResult | None = None
    verify: list[VerifyRow] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    plan: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "build": self.build.__dict__ if self.build else None,
            "push": self.push.__dict__ if self.push else None,
            "deploy": self.fleet.to_dict() if self.fleet else None,
            "verify": [r.to_dict() for r in self.verify] if self.verify is not None else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "plan": self.plan,
        }


@dataclass
class Fleet:
    """Open, preflighted and (unless a dry run) locked connections to the hosts of one operation."""

    hosts: list[Host]
    conns: dict[str, Connection]
    layout: rc.RemoteLayout
    locked: list[str] = field(default_factory=list)
    reporter: Reporter | None = None
    lock_id: str | None = None  # the id in our lock records: we release only locks we still hold

    @property
    def order(self) -> list[str]:
        return [h.label for h in self.hosts]

    def close(self) -> None:
        for label in self.locked:
            try:
                if not locks.release(self.conns[label], self.layout, self.lock_id) and self.reporter is not None:
                    self.reporter.warn(
                        f"{label}: this operation no longer holds the deploy lock (someone ran `ghdeploy lock "
                        "release` meanwhile) and left the lock now there in place"
                    )
            except GhdeployError as exc:
                if self.reporter is not None:
                    self.reporter.warn(
                        f"{label}: could not release the deploy lock ({exc}); `ghdeploy lock release --host {label}`"
                    )
        close_all(self.conns)


def open_fleet(
    config: Config,
    hosts: list[Host],
    opts: HostOptions,
    reporter: Reporter,
    lock: dict[str, Any] | None,
) -> Fleet:
    """Connect to all hosts, preflight them, take their locks. Touches nothing if any host fails."""
    layout = layout_of(config)
    conns, errors = connect_all(hosts, ssh_settings(config, opts.accept_new_host_key), reporter)
    fleet = Fleet(hosts=hosts, conns=conns, layout=layout, reporter=reporter, lock_id=(lock or {}).get("id"))
    try:
        if errors:
            hints = {e.hint for e in errors.values() if e.hint}
            raise_for_host_problems({k: str(v) for k, v in errors.items()}, "; ".join(sorted(hints)) or None)
        raise_for_host_problems(preflight_hosts(conns, layout, reporter), "fix the host(s) named above, then run again")
        if lock is not None:
            held: dict[str, str] = {}
            for label in fleet.order:
                holder = locks.acquire(conns[label], layout, lock)
                if holder is None:
                    fleet.locked.append(label)
                else:
                    held[label] = locks.describe(holder)
            if held:
                lines = "\n  ".join(f"{h}: {d}" for h, d in held.items())
                raise locks.LockHeld(
                    f"another deploy is running, no host was touched:\n  {lines}",
                    "wait for it to finish; if it is stale, `ghdeploy lock release --host HOST`",
                )
    except BaseException:
        fleet.close()
        raise
    return fleet


def deploy_plan(fleet: Fleet, op: Operation, target: Target) -> list[dict[str, Any]]:
    """The exact commands a deploy would run on each host, from what runs there now. Read-only."""
    plan: list[dict[str, Any]] = []
    layout = fleet.layout
    cfg = f"{layout.state_dir}/docker-config-XXXXXXXXXXXX"
    for label in fleet.order:
        conn = fleet.conns[label]
        snapshot = hostops.read_snapshot(conn, layout)
        holder = locks.read(conn, layout)
        current = snapshot.app_image
        commands = [
            rc.render(rc.acquire_lock(layout)) + "   # stdin: lock record",
            rc.render(rc.write_file(layout.state_dir, layout.pending_file)) + "   # stdin: what runs now",
        ]
        if op.auth is not None:
            commands.append(
                rc.render(rc.registry_login(op.auth.registry, op.auth.username, cfg)) + "   # stdin: ECR token"
            )
            commands.append(rc.render(rc.compose_pull(layout, target.ref, cfg)))
            commands.append(rc.render(rc.remove_dir(cfg)))
        commands.append(
            f"GET/POST localhost:{op.worker_port}/worker/health, /worker/drain   # drain, up to {op.drain_timeout:g}s"
        )
        for worker in snapshot.targeted:
            if worker.running and worker.status_port:
                commands.append(f"GET/POST localhost:{worker.status_port}/worker/drain   # {worker.spec.name}")
        commands.append(rc.render(rc.compose_rm(layout, target.ref, "worker")))
        for worker in snapshot.targeted:
            if worker.running:
                commands.append(rc.render(rc.stop_container(worker.spec.name, op.stop_timeout)))
        commands.append(rc.render(rc.compose_up(layout, target.ref)))
        for worker in snapshot.targeted:
            commands.append(
                rc.render(rc.run_container(layout, worker.spec, target.ref)) + "   # stdin: its environment"
            )
        commands.append(f"GET localhost:{op.api_port}/health   # until 200, up to {op.health_timeout:g}s")
        commands.append(rc.render(rc.append_file(layout.state_dir, layout.history_file)) + "   # stdin: history record")
        commands.append(rc.render(rc.remove_file(layout.pending_file)))
        commands.append(rc.render(rc.release_lock(layout, "XXXXXXXXXXXXXXXX")) + "   # only if still ours")
        plan.append(
            {
                "host": label,
                "current": current.to_dict() if current else None,
                "lock": holder,
                "rollback_to": current.to_dict() if current else None,
                "commands": commands,
            }
        )
    return plan


def deploy(
    config: Config,
    cwd: Path,
    reporter: Reporter,
    cancel: threading.Event,
    *,
    tag: str | None,
    mode: str,  # "full" | "push-only" | "deploy-only"
    allow_dirty: bool = False,
    platform: str | None = None,
    hosts_opts: HostOptions | None = None,
    batch: int = 1,
    dry_run: bool = False,
    message: str | None = None,
    expect_sha: str | None = None,
) -> DeployReport:
    opts = hosts_opts or HostOptions()
    timings: dict[str, float] = {}
    if tag:
        validate_tag(tag)
    hosts: list[Host] = []
    if mode != "push-only":
        hosts = resolve_hosts(config, opts, reporter)
    report = DeployReport(tag=tag or "", timings=timings)

    builds = mode in ("full", "push-only")
    if builds and dry_run:
        # Same checks as the build (clean tree, Dockerfile), so the plan is what the real run would do.
        report.tag, _ = planned_build(config, cwd, tag, allow_dirty)
        reporter.info(f"dry run: would build {config.image_name}:{report.tag} and push it and :latest")
        if mode == "push-only":
            report.plan = []
            return report
    elif builds:
        t = time.monotonic()
        report.build = build_image(config, cwd, reporter, tag=tag, platform=platform, allow_dirty=allow_dirty)
        timings["build"] = time.monotonic() - t
        report.tag = report.build.tag
        expect_sha = expect_sha or report.build.commit_sha
        t = time.monotonic()
        report.push = push_image(config, cwd, reporter, tag=report.tag)
        timings["push"] = time.monotonic() - t
        if mode == "push-only":
            return report
    else:
        git = None
        if not tag and not config.get("IMAGE_TAG"):
            try:
                git = git_state(cwd)
            except LocalToolError as exc:
                raise ConfigError(
                    f"no tag given, and the tag cannot default to HEAD's short SHA: {exc.message}",
                    "pass --tag TAG (or set IMAGE_TAG), or run from the app's git checkout",
                ) from None
        report.tag = default_tag(config, tag, git)

    t = time.monotonic()
    reporter.step(None, f"resolving {config.repository}:{report.tag} in {config.registry}")
    auth = registry.get_login(config.text("AWS_REGION"), config.registry)
    if builds and dry_run:
        # The tag need not exist yet: the build and push of the real run would create it.
        digest = registry.resolve_digest(auth, config.repository, report.tag)
    else:
        digest = registry.require_digest(auth, config.repository, report.tag)
    if report.push and report.push.digest != digest:
        raise PreflightError(f"the registry says {report.tag} is {digest}, but we pushed {report.push.digest}")
    target = Target(ref=f"{config.image_name}:{report.tag}", label=f"{config.repository}:{report.tag}", digest=digest)
    reporter.info(f"{target.label} is {digest or 'not in the registry yet'}")
    op = operation(config, reporter, cancel, message)
    op.auth = auth
    lock = None if dry_run else locks.lock_info(op.operator, "deploy", report.tag, message)
    fleet = open_fleet(config, hosts, opts, reporter, lock)
    if lock is not None and isinstance(cancel, CancelToken):
        cancel.arm()  # from here an interrupt stops at a safe point instead of at once
    timings["preflight"] = time.monotonic() - t
    try:
        if dry_run:
            report.plan = deploy_plan(fleet, op, target)
            return report
        t = time.monotonic()
        report.fleet = rolling(op, fleet.conns, fleet.order, lambda _label: target, batch, "deploy")
        timings["deploy"] = time.monotonic() - t
        if report.fleet.succeeded and mode == "full" and expect_sha:
            t = time.monotonic()
            reporter.step(None, "verifying /health/version on every host")
            report.verify = [verify_host(fleet.conns[label], op.api_port, expect_sha) for label in fleet.order]
            timings["verify"] = time.monotonic() - t
    finally:
        fleet.close()
    return report


# --- rollback -------------------------------------------------------------------------------


def previous_from_history(history: list[dict[str, Any]], running: str | None) -> hostops.ImageRecord | None:
    """The image that ran before the deploy that put `running` (an image ID) on this host.

    Walking back through deploys rather than taking the last record means a second rollback goes
    one release further back instead of flipping between the last two images.
    """
    for record in reversed(history):
        if (
            record.get("action") == "deploy"
            and record.get("result") == "succeeded"
            and record.get("image_id") == running
        ):
            return hostops.ImageRecord.from_dict(record.get("from"))
    return None


def rollback(
    config: Config,
    reporter: Reporter,
    cancel: threading.Event,
    *,
    to_tag: str | None,
    hosts_opts: HostOptions | None = None,
    batch: int = 1,
    dry_run: bool = False,
    message: str | None = None,
) -> DeployReport:
    opts = hosts_opts or HostOptions()
    hosts = resolve_hosts(config, opts, reporter)
    t0 = time.monotonic()
    auth = None
    shared_target: Target | None = None
    if to_tag:
        validate_tag(to_tag)
        auth = registry.get_login(config.text("AWS_REGION"), config.registry)
        digest = registry.require_digest(auth, config.repository, to_tag)
        shared_target = Target(
            ref=f"{config.image_name}:{to_tag}", label=f"{config.repository}:{to_tag}", digest=digest
        )
    op = operation(config, reporter, cancel, message)
    op.auth = auth
    lock = None if dry_run else locks.lock_info(op.operator, "rollback", to_tag or "previous", message)
    fleet = open_fleet(config, hosts, opts, reporter, lock)
    if lock is not None and isinstance(cancel, CancelToken):
        cancel.arm()  # from here an interrupt stops at a safe point instead of at once
    report = DeployReport(tag=to_tag or "previous")
    try:
        targets: dict[str, Target] = {}
        problems: dict[str, str] = {}
        for label in fleet.order:
            if shared_target is not None:
                targets[label] = shared_target
                continue
            conn = fleet.conns[label]
            running = hostops.read_snapshot(conn, fleet.layout).app_image
            running_id = running.image_id if running else None
            previous = previous_from_history(hostops.read_history(conn, fleet.layout, 1000), running_id)
            if previous is None or not previous.image_id:
                what = (running.tag or running_id[:19]) if running and running_id else "nothing"
                problems[label] = (
                    f"runs {what}; no deploy in this host's history put it there after another image: "
                    "nothing to roll back to"
                )
                continue
            ref = previous.ref or previous.restore_ref or previous.image_id
            targets[label] = Target(
                ref=ref,
                label=f"{config.repository}:{previous.tag}" if previous.tag else previous.image_id[:19],
                digest=None,
                image_id=previous.image_id,
            )
        if problems:
            raise_for_host_problems(problems, "use `ghdeploy rollback --to TAG` to name the image")
        report.timings["preflight"] = time.monotonic() - t0
        if dry_run:
            report.plan = [
                {"host": label, "rollback_to": targets[label].to_dict(), "commands": []} for label in fleet.order
            ]
            for item in report.plan:
                sub = deploy_plan(
                    Fleet(hosts=[h for h in hosts if h.label == item["host"]], conns=fleet.conns, layout=fleet.layout),
                    op,
                    targets[item["host"]],
                )
                item["current"] = sub[0]["current"]
                item["commands"] = sub[0]["commands"]
            return report
        # A recorded image may be known only by ID; ensure_image then finds it locally by ref or ID.
        t = time.monotonic()
        report.fleet = rolling(
            op, fleet.conns, fleet.order, lambda label: _local_target(fleet, label, targets[label]), batch, "rollback"
        )
        report.timings["rollback"] = time.monotonic() - t
    finally:
        fleet.close()
    return report


def _local_target(fleet: Fleet, label: str, target: Target) -> Target:
    """For a recorded image, the reference that still names exactly it on the host."""
    if target.image_id is None:
        return target
    conn = fleet.conns[label]
    for candidate in (target.ref, target.image_id):
        info = hostops.local_image(conn, candidate)
        if info is not None and info.get("Id") == target.image_id:
            return Target(ref=candidate, label=target.label, digest=None, image_id=target.image_id)
    return target


# --- read-only ------------------------------------------------------------------------------


def _read_fleet(
    config: Config, opts: HostOptions, reporter: Reporter
) -> tuple[list[Host], dict[str, Connection], dict[str, GhdeployError]]:
    hosts = resolve_hosts(config, opts, reporter)
    conns, errors = connect_all(hosts, ssh_settings(config, opts.accept_new_host_key), reporter)
    return hosts, conns, errors


def _per_host(config: Config, opts: HostOptions, reporter: Reporter, fn: Any, on_error: Any) -> list[Any]:
    from ghdeploy.deploy import parallel

    hosts, conns, errors = _read_fleet(config, opts, reporter)
    try:

        def one(host: Host) -> Any:
            if host.label in errors:
                return on_error(host.label, errors[host.label])
            reporter.step(host.label, "reading")
            value = fn(conns[host.label])
            reporter.step(host.label, "done")
            return value

        return parallel(hosts, one, limit=32)
    finally:
        close_all(conns)


def status(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostStatus]:
    layout = layout_of(config)
    api, worker = config.number("GH_API_PORT"), config.number("GH_WORKER_PORT")
    return _per_host(
        config,
        opts,
        reporter,
        lambda conn: host_status(conn, layout, api, worker),
        lambda label, exc: HostStatus(host=label, error=str(exc)),
    )


def verify(config: Config, cwd: Path, opts: HostOptions, reporter: Reporter, expect: str | None) -> list[VerifyRow]:
    if expect:
        expected = expect.strip().lower()
        if not (7 <= len(expected) <= 40 and all(c in "0123456789abcdef" for c in expected)):
            raise ConfigError(f"--expect {expect!r} is not a commit SHA (7 to 40 hex digits)")
    else:
        expected = git_state(cwd).sha
    api = config.number("GH_API_PORT")
    return _per_host(
        config,
        opts,
        reporter,
        lambda conn: verify_host(conn, api, expected),
        lambda label, exc: VerifyRow(host=label, expected=expected, error=str(exc)),
    )


@dataclass
class HostHistory:
    host: str
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def history(config: Config, opts: HostOptions, reporter: Reporter, limit: int) -> list[HostHistory]:
    layout = layout_of(config)
    return _per_host(
        config,
        opts,
        reporter,
        lambda conn: HostHistory(host=conn.host.label, records=hostops.read_history(conn, layout, limit)),
        lambda label, exc: HostHistory(host=label, error=str(exc)),
    )


@dataclass
class HostLock:
    host: str
    holder: dict[str, Any] | None = None
    error: str | None = None
    released: bool = False


def lock_status(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostLock]:
    layout = layout_of(config)
    return _per_host(
        config,
        opts,
        reporter,
        lambda conn: HostLock(host=conn.host.label, holder=locks.read(conn, layout)),
        lambda label, exc: HostLock(host=label, error=str(exc)),
    )


def lock_release(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostLock]:
    layout = layout_of(config)

    def release(conn: Connection) -> HostLock:
        holder = locks.read(conn, layout)
        if holder is not None:
            locks.release(conn, layout)
        return HostLock(host=conn.host.label, holder=holder, released=holder is not None)

    return _per_host(config, opts, reporter, release, lambda label, exc: HostLock(host=label, error=str(exc)))
