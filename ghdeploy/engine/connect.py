"""Reaching many hosts at once: SSH settings from config, connect all, run a function on each.

Kept apart from the rolling deploy (engine/fleet.py) so that the read-only commands (verify,
status, history, lock) import only this: the deploy engine's modules cost tens of ms to import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy.config import Config
from ghdeploy.errors import ConfigError, GhdeployError, problem_kind
from ghdeploy.hosts import Host
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy import remote_commands as rc
    from ghdeploy.transports.ssh import Connection, SSHSettings


@dataclass
class HostOptions:
    only: list[str] = field(default_factory=list)  # --host
    accept_new_host_key: bool = False


def layout_of(config: Config) -> rc.RemoteLayout:
    from ghdeploy import remote_commands as rc  # the command builders: not needed by verify

    # Targeted workers from another repository are not ours. A read-only command that did not
    # load the registry still shows them all rather than fail on a key it does not need.
    try:
        image_repo = config.image_name if config.get("ECR_REGISTRY") else None
    except ConfigError:
        image_repo = None
    return rc.RemoteLayout(
        app_dir=config.text("GHOSTHANDS_DIR").rstrip("/") or "/",
        compose_file=config.compose_file,
        image_repo=image_repo,
    )


def ssh_settings(config: Config, accept_new: bool) -> SSHSettings:
    from ghdeploy.transports.ssh import SSHSettings

    ssh_config = config.path("SSH_CONFIG") if config.get("SSH_CONFIG") else None
    return SSHSettings(
        key_file=config.path("EC2_KEY") if config.get("EC2_KEY") else None,
        known_hosts=config.path("SSH_KNOWN_HOSTS"),
        accept_new_host_key=accept_new,
        ssh_config=ssh_config if ssh_config and ssh_config.is_file() else None,
    )


def connect_ahead(config: Config, opts: HostOptions) -> None:
    """Start connecting to the command's hosts in the background (see engine/preconnect.py).

    Only for hosts known from the config: an ASG's instances are found by connect time.
    """
    if config.get("ASG_NAME") or not config.get("EC2_HOST"):
        return
    from ghdeploy.engine import preconnect
    from ghdeploy.hosts import narrow

    preconnect.start(narrow(config.hosts, opts.only), ssh_settings(config, opts.accept_new_host_key))


def parallel(items: list[Any], fn: Callable[[Any], Any], limit: int = 16) -> list[Any]:
    """fn over items in threads; results in order.

    The main thread waits in short slices: Python runs signal handlers only in the main thread,
    and a SIGINT that the kernel hands to one of the worker threads would otherwise wait until
    every host was done before the deploy heard of it.
    """
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        pending = set(futures)
        while pending:
            _, pending = futures_wait(pending, timeout=0.1)
        return [f.result() for f in futures]


def connect_all(
    hosts: list[Host], settings: SSHSettings, reporter: Reporter
) -> tuple[dict[str, Connection], dict[str, GhdeployError]]:
    """Connect to every host at once; return the connections and the errors, by host label."""
    from ghdeploy.engine import preconnect
    from ghdeploy.transports.ssh import connect

    conns: dict[str, Connection] = {}
    errors: dict[str, GhdeployError] = {}

    def one(host: Host) -> None:
        reporter.step(host.label, "connecting")
        try:
            # Started ahead by the CLI (engine/preconnect.py) when it could; else connect now.
            conns[host.label] = preconnect.take(host, settings) or connect(host, settings)
            reporter.step(host.label, "connected")
        except GhdeployError as exc:
            errors[host.label] = exc
            reporter.step(host.label, problem_kind(exc))  # "unknown host key" says more than "unreachable"

    parallel(hosts, one, limit=32)
    return conns, errors


def close_all(conns: dict[str, Connection]) -> None:
    for conn in conns.values():
        with contextlib.suppress(Exception):  # closing is best effort; the work is done
            conn.close()
