"""`ghdeploy prune`, and the prune every successful deploy ends with (see ghdeploy.prune)."""

from __future__ import annotations

import getpass
import socket

from ghdeploy import locks
from ghdeploy.commands.common import resolve_hosts
from ghdeploy.config import Config
from ghdeploy.engine.fleet import Fleet, HostOptions, open_fleet, parallel
from ghdeploy.errors import GhdeployError
from ghdeploy.progress import Reporter
from ghdeploy.prune import PruneResult, prune_host, summary
from ghdeploy.results import FleetResult, HostResult


def prune(config: Config, opts: HostOptions, reporter: Reporter, *, dry_run: bool) -> list[PruneResult]:
    """On every host: keep the last RETAIN_RELEASES releases' images, remove the repository's others.

    Takes each host's deploy lock (a deploy in progress may have pulled an image no container
    uses yet); a dry run reads only.
    """
    hosts = resolve_hosts(config, opts, reporter)
    operator = f"{getpass.getuser()}@{socket.gethostname()}"
    lock = None if dry_run else locks.lock_info(operator, "prune", None, None)
    fleet = open_fleet(config, hosts, opts, reporter, lock)
    try:
        return parallel(fleet.order, lambda label: _one(config, fleet, label, reporter, dry_run), limit=32)
    finally:
        fleet.close()


def _one(config: Config, fleet: Fleet, label: str, reporter: Reporter, dry_run: bool) -> PruneResult:
    reporter.step(label, "listing images" if dry_run else "pruning images")
    try:
        result = prune_host(
            fleet.conns[label], fleet.layout, config.image_name, config.retain_releases, dry_run=dry_run
        )
    except GhdeployError as exc:
        result = PruneResult(host=label, dry_run=dry_run, errors=[str(exc)])
    reporter.step(label, summary(result))
    return result


def after_deploy(config: Config, fleet: Fleet, outcome: FleetResult, reporter: Reporter) -> None:
    """Prune each host the deploy succeeded on (we still hold its lock). Never fails the deploy:
    a problem is a note on that host's result and a warning."""
    done = [h for h in outcome.hosts if h.succeeded and h.host in fleet.conns]

    def one(host: HostResult) -> None:
        label = host.host
        try:
            result = prune_host(fleet.conns[label], fleet.layout, config.image_name, config.retain_releases)
        except GhdeployError as exc:
            result = PruneResult(host=label, errors=[str(exc)])
        line = summary(result)
        host.notes.append(f"disk: {line}")
        if result.ok:
            reporter.info(f"{label}: {line}")
        else:
            reporter.warn(f"{label}: {line}")

    parallel(done, one, limit=32)
