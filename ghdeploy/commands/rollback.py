"""`ghdeploy rollback`: put back the image each host ran before its last deploy, or --to TAG."""

from __future__ import annotations

import threading
import time
from typing import Any

from ghdeploy import hostops, locks, registry
from ghdeploy.commands.common import operation, resolve_hosts
from ghdeploy.config import Config
from ghdeploy.engine.fleet import Fleet, HostOptions, open_fleet, raise_for_host_problems, rolling
from ghdeploy.engine.host import naming_exactly
from ghdeploy.engine.plan import plan_host
from ghdeploy.hostfit import MachineFacts, platform_problems
from ghdeploy.images import validate_tag
from ghdeploy.progress import Reporter
from ghdeploy.results import DeployReport, Target
from ghdeploy.waiting import CancelToken


def previous_from_history(history: list[dict[str, Any]], running: str | None) -> hostops.ImageRecord | None:
    """The image that ran before the deploy that put `running` (an image ID) on this host.

    Walking back through deploys rather than taking the last record means a second rollback goes
    one release further back instead of flipping between the last two images. A record whose
    `from` is the image it deployed (a fleet deploy run again after it stopped half-way) put
    nothing new there and is skipped: taking it would "roll back" to what already runs. A deploy
    the host's guardian finished by keeping the new image (`abandoned`, guardian `kept`) counts
    as one that put it there.
    """
    for record in reversed(history):
        if record.get("action") != "deploy" or record.get("image_id") != running:
            continue
        kept = record.get("result") == "abandoned" and record.get("guardian") == "kept"
        if record.get("result") != "succeeded" and not kept:
            continue
        previous = hostops.ImageRecord.from_dict(record.get("from"))
        if previous is not None and previous.image_id == running:
            continue
        return previous
    return None


def rollback_point(
    history: list[dict[str, Any]], pending: dict[str, Any] | None, running: str | None
) -> tuple[hostops.ImageRecord | None, str]:
    """Where a plain `rollback` goes on one host, and why (for the plan and the messages).

    A deploy that was stopped mid-way and never healed (pending.json is still there) leaves what
    runs unproven: its recorded known-good image comes first. Else the history walk above.
    """
    if pending:
        known_good = hostops.ImageRecord.from_dict(pending.get("known_good") or pending.get("from"))
        if known_good is not None and known_good.image_id and known_good.image_id != running:
            when = pending.get("time", "?")
            return (
                known_good,
                f"the image an unfinished {pending.get('action', 'deploy')} of {when} recorded as running before it",
            )
    previous = previous_from_history(history, running)
    if previous is not None and previous.image_id and previous.image_id != running:
        return previous, "the image that ran before the last deploy"
    return None, ""


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
        validate_tag(to_tag, "--to")
        auth = registry.login_once(config.text("AWS_REGION"), config.registry)
        digest = registry.require_digest(auth, config.repository, to_tag, "--to", config.aws_region)
        shared_target = Target(
            ref=f"{config.image_name}:{to_tag}", label=f"{config.repository}:{to_tag}", digest=digest
        )
    op = operation(config, reporter, cancel, message)
    op.auth = auth
    lock = None if dry_run else locks.lock_info(op.operator, "rollback", to_tag or "previous", message)
    host_check = None
    if shared_target is not None and auth is not None:
        # A tag from the registry may be built for another platform than the hosts'.
        images = registry.image_platforms(auth, config.repository, shared_target.digest or to_tag or "")

        def host_check(facts: dict[str, MachineFacts]) -> tuple[dict[str, str], str | None]:
            wrong = platform_problems(facts, images, shared_target.label if shared_target else "")
            return wrong, "roll back to a tag built for the hosts' platform" if wrong else None

    fleet = open_fleet(config, hosts, opts, reporter, lock, host_check)
    op.host_services = {label: facts.image_services for label, facts in fleet.facts.items()}
    op.guards = fleet.guards
    if lock is not None and isinstance(cancel, CancelToken):
        cancel.arm()  # from here an interrupt stops at a safe point instead of at once
    report = DeployReport(tag=to_tag or "previous")
    try:
        targets: dict[str, Target] = {}
        problems: dict[str, str] = {}
        pruned: dict[str, hostops.ImageRecord] = {}  # recorded images no longer on their host
        for label in fleet.order:
            if shared_target is not None:
                running = hostops.read_snapshot(fleet.conns[label], fleet.layout).app_image
                if running is not None and shared_target.digest and running.digest == shared_target.digest:
                    problems[label] = f"already runs {shared_target.label}: there is nothing to roll back"
                    continue
                targets[label] = shared_target
                continue
            conn = fleet.remotes[label]
            running = hostops.read_snapshot(conn, fleet.layout).app_image
            running_id = running.image_id if running else None
            warnings: list[str] = []
            previous, why = rollback_point(
                hostops.read_history(conn, fleet.layout, 1000, warnings),
                hostops.read_pending(conn, fleet.layout),
                running_id,
            )
            for warning in warnings:
                reporter.warn(warning)
            if previous is None or not previous.image_id:
                what = (running.tag or running_id[:19]) if running and running_id else "nothing"
                problems[label] = (
                    f"runs {what}; no deploy in this host's history put it there after another image: "
                    "nothing to roll back to"
                )
                continue
            reporter.info(f"{label}: rolling back to {previous.tag or previous.image_id[:19]}, {why}")
            ref = previous.ref or previous.restore_ref or previous.image_id
            targets[label] = Target(
                ref=ref,
                label=f"{config.repository}:{previous.tag}" if previous.tag else previous.image_id[:19],
                digest=None,
                image_id=previous.image_id,
            )
            if naming_exactly(conn, previous.image_id, (ref, previous.repo_digest, previous.image_id)) is None:
                pruned[label] = previous
        if pruned:
            auth = _pull_back_pruned(config, reporter, pruned, targets, problems)
            op.auth = auth
        if problems:
            hint = (
                "name hosts that need it with --host"
                if shared_target is not None
                else "use `ghdeploy rollback --to TAG` to name the image (one that is in the registry)"
            )
            raise_for_host_problems(problems, hint)
        report.timings["preflight"] = time.monotonic() - t0
        if dry_run:
            report.plan = [
                plan_host(op, fleet.remotes[label], _local_target(fleet, label, targets[label]), "rollback")
                for label in fleet.order
            ]
            return report
        # A recorded image may be known only by ID; ensure_image then finds it locally by ref or ID.
        t = time.monotonic()
        report.fleet = rolling(
            op, fleet.remotes, fleet.order, lambda label: _local_target(fleet, label, targets[label]), batch, "rollback"
        )
        report.timings["rollback"] = time.monotonic() - t
    finally:
        fleet.close()
    return report


def _pull_back_pruned(
    config: Config,
    reporter: Reporter,
    pruned: dict[str, hostops.ImageRecord],
    targets: dict[str, Target],
    problems: dict[str, str],
) -> registry.RegistryAuth | None:
    """Hosts whose rollback image is gone (a deploy keeps only RETAIN_RELEASES releases): pull it
    back by the exact digest its history recorded, with the deploy's registry login; a host
    whose image cannot be pulled back is a problem (nothing is touched). Returns the login."""
    auth = None
    for label, previous in pruned.items():
        name = previous.tag or (previous.image_id or "?")[:19]
        gone = f"{name} ({(previous.image_id or '?')[:19]}) is no longer on the host (a deploy keeps RETAIN_RELEASES releases)"
        digest = previous.digest
        where = (previous.repo_digest or "").split("@", 1)[0]
        if not digest or where != config.image_name:
            problems[label] = f"{gone}, and its history records no digest in {config.image_name} to pull it back by"
            continue
        if auth is None:
            auth = registry.login_once(config.text("AWS_REGION"), config.registry)
        if registry.resolve_digest(auth, config.repository, digest) is None:
            problems[label] = f"{gone}, nor in the registry: {config.image_name}@{digest} is not there any more"
            continue
        reporter.info(f"{label}: {gone}; pulling it back from the registry by its recorded digest {digest}")
        targets[label] = Target(
            ref=f"{config.image_name}@{digest}", label=targets[label].label, digest=digest, image_id=previous.image_id
        )
    return auth


def _local_target(fleet: Fleet, label: str, target: Target) -> Target:
    """For a recorded image, the reference that still names exactly it on the host."""
    if target.image_id is None:
        return target
    found = naming_exactly(fleet.remotes[label], target.image_id, (target.ref, target.image_id))
    return target if found is None else Target(ref=found, label=target.label, digest=None, image_id=target.image_id)
