"""What several commands share: which hosts, the operation settings, the read-only fan-out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions, close_all, connect_all, layout_of, parallel, ssh_settings
from ghdeploy.errors import ConfigError, GhdeployError, SSHError
from ghdeploy.hosts import Host, discover_asg, narrow
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy.engine.host import Operation
    from ghdeploy.transports.ssh import Connection

T = TypeVar("T")


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
    from ghdeploy.engine.host import Operation  # the deploy engine: not for the read-only commands

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


def per_host(
    config: Config,
    opts: HostOptions,
    reporter: Reporter,
    fn: Callable[[Connection], T],
    on_error: Callable[[str, GhdeployError], T],
    *,
    read_only: bool = True,
) -> list[T]:
    """The body of every read-only command: connect to all hosts at once, `fn` on each, in order.

    A host that cannot be reached gets `on_error(label, error)` in its place instead of failing the rest.
    When the link drops during a read-only pass, what was read is partial: the host is read once
    more on a fresh connection (reading twice changes nothing; `read_only=False` opts out).
    """
    hosts = resolve_hosts(config, opts, reporter)
    conns, errors = connect_all(hosts, ssh_settings(config, opts.accept_new_host_key), reporter)
    try:

        def one(host: Host) -> T:
            if host.label in errors:
                return on_error(host.label, errors[host.label])
            conn = conns[host.label]
            reporter.step(host.label, "reading")
            for attempt in (1, 2):
                try:
                    value = fn(conn)
                except (EOFError, OSError) as exc:
                    # paramiko's own errors for a dropped link (click would turn EOFError into "aborted").
                    if not read_only or attempt == 2:
                        return on_error(host.label, SSHError(host.label, f"SSH connection lost while reading: {exc}"))
                else:
                    if not read_only or conn.alive() or attempt == 2:
                        break
                reporter.step(host.label, "connection lost while reading; reconnecting")
                try:
                    conn.reconnect()
                except GhdeployError as exc:
                    return on_error(host.label, exc)
            reporter.step(host.label, "done")
            return value

        return parallel(hosts, one, limit=32)
    finally:
        close_all(conns)
