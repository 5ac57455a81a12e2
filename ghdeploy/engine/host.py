"""The deploy sequence on one host, written once and run over any transport.

Per host: record what runs, make the new image present (login on stdin + pull, digest checked),
drain the worker, switch (`compose up -d`, targeted workers), wait for /health, and on any
failure after the switch began put back the exact image recorded first.
"""

from __future__ import annotations

import getpass
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghdeploy import __version__, hostops, records
from ghdeploy import remote_commands as rc
from ghdeploy.engine import guardian
from ghdeploy.errors import GhdeployError, OperationFailed, SSHError
from ghdeploy.hostops import ImageRecord, Snapshot
from ghdeploy.progress import Reporter
from ghdeploy.records import HistoryRecord, PendingRecord
from ghdeploy.results import Action, HostResult, Result, Target, unlabel
from ghdeploy.transports.base import Remote
from ghdeploy.waiting import HEALTH_INTERVAL, Cancelled, Clock, drain_worker, health_ok, wait_for, worker_health

if TYPE_CHECKING:
    from ghdeploy.registry import RegistryAuth

__all__ = ["HostResult", "Operation", "Target", "run_host"]


@dataclass
class Operation:
    """Everything a host step needs besides the connection."""

    layout: rc.RemoteLayout
    reporter: Reporter
    api_port: int
    worker_port: int
    health_timeout: float
    drain_timeout: float
    stop_timeout: int
    auth: RegistryAuth | None = None
    clock: Clock = field(default_factory=Clock)
    cancel: threading.Event = field(default_factory=threading.Event)
    operator: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")
    message: str | None = None
    # Names of throw-away files on the host (the registry credentials); the dry run shows XXXX.
    token: Callable[[int], str] = secrets.token_hex
    # Per host, the compose services whose image is ECR_IMAGE (found in preflight): the only ones
    # pulled and restarted. A host not preflighted gets api and worker.
    host_services: dict[str, list[str]] = field(default_factory=dict)

    # The hosts' guardians (engine/guardian.py), by host label, armed when their locks were taken.
    guards: dict[str, guardian.Guard] = field(default_factory=dict)

    def image_services(self, host: str) -> list[str]:
        return self.host_services.get(host) or ["api", "worker"]

    @property
    def heal_budget(self) -> float:
        """How long a host left alone may take to heal itself: the promise made to the operator."""
        return self.drain_timeout + self.stop_timeout + self.health_timeout + 30


@contextmanager
def phase(result: HostResult, name: str, clock: Clock) -> Iterator[None]:
    start = clock.now()
    try:
        yield
    finally:
        result.phases[name] = result.phases.get(name, 0.0) + clock.now() - start


# --- image presence -------------------------------------------------------------------------


def _has_digest(info: dict[str, Any], digest: str | None) -> bool:
    return digest is None or any(d.endswith("@" + digest) for d in info.get("RepoDigests") or [])


def ensure_image(op: Operation, conn: Remote, target: Target) -> str:
    """Make `target` present on the host; return its image ID. Pulls only when needed."""
    label = conn.host.label
    info = hostops.local_image(conn, target.ref)
    if info is not None and _has_digest(info, target.digest):
        op.reporter.step(label, f"{target.label} already on host")
    else:
        if op.auth is None:
            raise OperationFailed(f"{label}: {target.ref} is not on the host and there is no registry login to pull it")
        config_dir = rc.docker_config_dir(op.layout.state_dir, op.token(6))
        op.reporter.step(label, f"pulling {target.label}")
        try:
            from ghdeploy.docker import registry_config

            creds = registry_config(op.auth.registry, op.auth.username, op.auth.password)
            hostops.require_ok(
                conn.run(rc.write_registry_auth(op.layout.state_dir, config_dir), stdin=creds.encode(), timeout=60),
                "writing the registry credentials",
                label,
            )
            hostops.require_ok(
                conn.run(rc.compose_pull(op.layout, target.ref, config_dir, op.image_services(label)), timeout=1800),
                "docker compose pull",
                label,
            )
        finally:
            conn.run(rc.remove_dir(config_dir), timeout=60)
        info = hostops.local_image(conn, target.ref)
        if info is None:
            raise OperationFailed(f"{label}: {target.ref} is not on the host after the pull")
        if not _has_digest(info, target.digest):
            raise OperationFailed(
                f"{label}: pulled {target.label} but its digest is not {target.digest} (the tag moved during the deploy?)",
                "run the deploy again",
            )
    image_id = str(info["Id"])
    if target.image_id and image_id != target.image_id:
        raise OperationFailed(f"{label}: {target.ref} is image {image_id[:19]}, expected {target.image_id[:19]}")
    return image_id


# --- the switch -----------------------------------------------------------------------------


def drain_all(op: Operation, conn: Remote, snapshot: Snapshot, cancel: threading.Event | None) -> list[str]:
    """Drain the compose worker and every running targeted worker at once; return notes."""
    label = conn.host.label
    ports: list[tuple[str, int]] = []
    worker = snapshot.services.get("worker")
    if worker is not None and worker.state == "running":
        ports.append(("worker", op.worker_port))
    ports += [(t.spec.name, t.status_port) for t in snapshot.targeted if t.running and t.status_port]
    if not ports:
        return []
    op.reporter.step(label, "draining " + ", ".join(name for name, _ in ports))
    notes: list[str] = []

    def one(name: str, port: int) -> str:
        with conn.http_client(timeout=5.0) as http:
            result = drain_worker(http, port, op.drain_timeout, op.clock, cancel)
        if result.outcome == "no-endpoint":
            return f"{name}: no worker status endpoint, SIGTERM fallback"
        if result.outcome == "timeout":
            return f"{name}: did not drain within {op.drain_timeout:g}s, SIGTERM fallback"
        if result.outcome == "drained":
            return f"{name}: drained in {result.seconds:.1f}s"
        return f"{name}: idle"

    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        for note in pool.map(lambda p: one(*p), ports):
            notes.append(note)
            op.reporter.info(f"{label}: {note}")
    return notes


def switch_to(op: Operation, conn: Remote, snapshot: Snapshot, ref: str, targeted_refs: dict[str, str]) -> None:
    """Stop the worker(s) and start the app on `ref`; targeted workers on targeted_refs[name].

    Each targeted worker is replaced without being destroyed first (hostops.replace_targeted);
    one that was stopped before the deploy is created but stays stopped.
    """
    label = conn.host.label
    compose_worker = snapshot.services.get("worker")
    stopping = ["worker"] if compose_worker is not None and compose_worker.state == "running" else []
    stopping += [w.spec.name for w in snapshot.targeted if w.running]
    if stopping:  # a fresh host has no worker: nothing to wait up to STOP_TIMEOUT for
        op.reporter.step(label, f"stopping {', '.join(stopping)} (up to {op.stop_timeout}s)")
    hostops.require_ok(
        conn.run(rc.compose_stop_rm(op.layout, ref, "worker", op.stop_timeout), timeout=op.stop_timeout + 120),
        "stopping the worker",
        label,
    )
    for worker in snapshot.targeted:
        if worker.running:
            conn.run(rc.stop_container(worker.spec.name, op.stop_timeout), timeout=op.stop_timeout + 120)
    op.reporter.step(label, "docker compose up -d")
    services = None if snapshot.empty else op.image_services(label)
    hostops.require_ok(conn.run(rc.compose_up(op.layout, ref, services), timeout=900), "docker compose up", label)
    for worker in snapshot.targeted:
        image = targeted_refs.get(worker.spec.name)
        if image:
            op.reporter.step(label, f"replacing {worker.spec.name}")
            hostops.replace_targeted(conn, op.layout, worker, image)


def drop_backups(op: Operation, conn: Remote, snapshot: Snapshot) -> list[str]:
    """The switch is checked: remove the targeted workers' backups. Returns notes on failures."""
    notes = []
    for worker in snapshot.targeted:
        try:
            hostops.drop_backup(conn, worker.spec.name)
        except GhdeployError as exc:
            notes.append(f"could not remove the backup of {worker.spec.name}: {exc}")
            op.reporter.warn(f"{conn.host.label}: could not remove the backup of {worker.spec.name}: {exc}")
    return notes


def wait_healthy(op: Operation, conn: Remote, cancel: threading.Event | None) -> float:
    """Poll /health until 200; return seconds waited. Raises OperationFailed on timeout."""
    label = conn.host.label
    op.reporter.step(label, f"waiting for /health (up to {op.health_timeout:g}s)")
    start = op.clock.now()
    with conn.http_client(timeout=2.0) as http:
        healthy = wait_for(
            lambda: link_up(conn) and health_ok(http, op.api_port),
            op.health_timeout,
            op.clock,
            cancel,
            first=HEALTH_INTERVAL / 2,
            max_interval=HEALTH_INTERVAL,
        )
    if not healthy:
        raise OperationFailed(f"{label}: /health did not answer 200 within {op.health_timeout:g}s")
    return op.clock.now() - start


def link_up(conn: Remote) -> bool:
    """True while the connection lives; raises SSHError once it is gone (a dead link must not
    look like an unhealthy service and lead to a rollback over that same dead link)."""
    alive = getattr(conn, "alive", None)
    if alive is not None and not alive():
        raise SSHError(conn.host.label, "SSH connection lost", "check the host's network")
    return True


def link_lost(label: str, exc: BaseException) -> SSHError:
    return SSHError(label, f"SSH connection lost ({exc or type(exc).__name__})", "check the host's network")


def connection_lost(conn: Remote) -> bool:
    alive = getattr(conn, "alive", None)
    return alive is not None and not alive()


# How long a restarted worker without a status endpoint must stay up before it counts as started.
WORKER_SETTLE = 3.0


def check_running(
    conn: Remote, op: Operation, image_id: str, targeted: list[hostops.TargetedWorker] | None = None
) -> None:
    """The api must really run `image_id` now (compose could have kept an old container), and the
    worker must be up on it too: a worker that crashes at start is as bad as a failing /health.

    The worker counts as up once its /worker/health answers; one without a status endpoint (an
    older image) must stay running, never restarted, for WORKER_SETTLE seconds. Targeted workers
    (`targeted`, as recorded before the switch) are checked the same way; one that was stopped
    must exist and still be stopped.
    """
    label = conn.host.label
    after = hostops.read_snapshot(conn, op.layout)
    api = after.services.get("api")
    if api is None or api.image.image_id != image_id:
        running = api.image.image_id[:19] if api and api.image.image_id else "nothing"
        raise OperationFailed(f"{label}: api runs {running}, expected {image_id[:19]}")
    deadline = op.clock.now() + WORKER_SETTLE
    pending: dict[str, int | None] = {}
    if after.services.get("worker") is not None:
        pending["worker"] = op.worker_port
    for recorded in targeted or []:
        pending[recorded.spec.name] = recorded.status_port
    should_run = {w.spec.name: w.running for w in targeted or []}
    with conn.http_client(timeout=2.0) as http:
        while True:
            now = {w.spec.name: w for w in after.targeted}
            for name in list(pending):
                if name == "worker":
                    worker = after.services.get("worker")
                    ok = worker is not None and worker.state == "running" and not worker.restarts
                    ok = ok and worker is not None and worker.image.image_id == image_id
                    state = "gone" if worker is None else f"{worker.state}, restarted {worker.restarts} time(s)"
                    what = "the worker"
                else:
                    current = now.get(name)
                    what = name
                    if current is None:
                        raise OperationFailed(f"{label}: {name} is gone after the switch")
                    if not should_run[name]:
                        if current.running:
                            raise OperationFailed(f"{label}: {name} was stopped before the deploy but runs now")
                        pending.pop(name)
                        continue
                    ok = current.running and not current.restarts
                    state = f"running={current.running}, restarted {current.restarts} time(s)"
                if not ok:
                    raise OperationFailed(f"{label}: {what} is not staying up after the restart ({state})")
                port = pending[name]
                if (port is not None and worker_health(http, port) is not None) or op.clock.now() >= deadline:
                    pending.pop(name)
            if not pending:
                return
            op.clock.sleep(0.2)
            after = hostops.read_snapshot(conn, op.layout)


# --- rollback -------------------------------------------------------------------------------


def naming_exactly(conn: Remote, image_id: str | None, candidates: tuple[str | None, ...]) -> str | None:
    """The first of `candidates` that names exactly image `image_id` on this host (a tag may have
    moved since, or been removed), or None."""
    for candidate in candidates:
        if not candidate:
            continue
        info = hostops.local_image(conn, candidate)
        if info is not None and info.get("Id") == image_id:
            return candidate
    return None


def restore_ref(conn: Remote, record: ImageRecord) -> str:
    """The nicest reference that still names exactly the recorded image on this host."""
    found = naming_exactly(conn, record.image_id, (record.ref, record.repo_digest, record.image_id))
    if found is not None:
        return found
    raise OperationFailed(
        f"{conn.host.label}: the previous image {record.image_id and record.image_id[:19]} is no longer on the host",
        "deploy a known-good tag with `ghdeploy deploy --deploy-only --tag TAG`",
    )


def put_back_targeted(
    op: Operation,
    conn: Remote,
    worker: hostops.TargetedWorker,
    present: hostops.TargetedWorker | None,
    has_backup: bool,
    ref: str,
) -> None:
    """One targeted worker back as recorded: its backup if there is one, else the container as it
    is (started if it ran), else recreated on its recorded image."""
    label = conn.host.label
    name = worker.spec.name
    if has_backup:
        op.reporter.step(label, f"putting back {name}")
        hostops.restore_targeted(conn, worker)
    elif present is not None and present.image.image_id == worker.image.image_id:
        if worker.running:
            hostops.require_ok(conn.run(rc.start_container(name), timeout=120), f"starting {name}", label)
    elif present is not None:
        op.reporter.step(label, f"recreating {name} on its previous image")
        image = restore_ref(conn, worker.image) if worker.image.image_id else ref
        hostops.replace_targeted(conn, op.layout, worker, image)
    else:
        raise OperationFailed(f"{label}: {name} is gone, and there is no backup of it to put back")


def restore(op: Operation, conn: Remote, snapshot: Snapshot, point: ImageRecord | None = None) -> str:
    """Put back exactly `point` (default: the image `snapshot` recorded); health-check it. Returns
    the image ID. Not cancellable.

    A targeted worker whose backup is still there gets that very container back (renamed, and
    started if it ran); one not replaced yet keeps its container; only one replaced and already
    checked is recreated from its recorded configuration on its recorded image.
    """
    label = conn.host.label
    previous = point or snapshot.app_image
    if previous is None or not previous.image_id:
        raise OperationFailed(f"{label}: nothing ran before this deploy, so there is no image to roll back to")
    ref = restore_ref(conn, previous)
    op.reporter.step(label, f"rolling back to {previous.tag or previous.image_id[:19]}")
    current = hostops.read_snapshot(conn, op.layout)
    drain_all(op, conn, current, None)
    backups = set(current.backups)
    now = {t.spec.name: t for t in current.targeted}
    # Stop what runs now (compose worker, targeted workers), bring the app back on `ref`.
    switch_to(op, conn, Snapshot(services=current.services, targeted=current.targeted), ref, {})
    recreated: list[hostops.TargetedWorker] = []
    failed: list[str] = []
    for worker in snapshot.targeted:  # each one, even when another could not be put back
        try:
            put_back_targeted(op, conn, worker, now.get(worker.spec.name), worker.spec.name in backups, ref)
        except GhdeployError as exc:
            failed.append(unlabel(str(exc), label))
            continue
        present = now.get(worker.spec.name)
        if worker.spec.name not in backups and present is not None and present.image.image_id != worker.image.image_id:
            recreated.append(worker)
    if failed:
        raise OperationFailed(f"{label}: " + "; ".join(failed))
    wait_healthy(op, conn, None)
    check_running(conn, op, previous.image_id, snapshot.targeted)
    drop_backups(op, conn, Snapshot(targeted=recreated))
    return previous.image_id


# --- one host -------------------------------------------------------------------------------


def history_record(op: Operation, result: HostResult) -> HistoryRecord:
    finished = datetime.now(UTC)
    shared = result.outcome()  # the fields the --json host result shows too, serialised once
    return HistoryRecord(
        time=records.now_iso(finished),
        started=records.iso_ms(finished - timedelta(seconds=result.duration)),
        finished=records.iso_ms(finished),
        action=str(result.action),
        operator=op.operator,
        message=op.message,
        from_image=shared["from"],
        to=shared["to"],
        image_id=shared["image_id"],
        result=shared["result"],
        error=shared["error"],
        duration_s=round(result.duration, 3),
        ghdeploy=__version__,
    )


def pending_record(op: Operation, result: HostResult) -> PendingRecord:
    return PendingRecord.from_record(history_record(op, result), result="in progress")


def known_good(unfinished: dict[str, Any] | None, snapshot: Snapshot) -> ImageRecord | None:
    """The rollback point: what runs now, unless a deploy was stopped here before it finished and
    nothing healed the host since (pending.json is still there). Then what runs may be that
    deploy's unproven image, and the point is the image it recorded as running before it."""
    if unfinished:
        recorded = ImageRecord.from_dict(unfinished.get("known_good") or unfinished.get("from"))
        if recorded is not None and recorded.image_id:
            return recorded
    return snapshot.app_image


def switch_plan(
    op: Operation, conn: Remote, snapshot: Snapshot, point: ImageRecord | None, target: Target, new_id: str
) -> guardian.SwitchPlan:
    """What the guardian needs to put the host back, computed here before anything changes."""
    ref = ""
    if point is not None and point.image_id:
        try:
            ref = restore_ref(conn, point)
        except OperationFailed:
            ref = ""  # the recorded image is gone from the host: the guardian can only keep the new one
    return guardian.SwitchPlan(
        compose_file=op.layout.compose_file,
        app_dir=op.layout.app_dir,
        restore_ref=ref,
        restore_id=(point.image_id or "") if ref and point else "",
        new_ref=target.ref,
        new_id=new_id,
        stop_timeout=op.stop_timeout,
        health_timeout=op.health_timeout,
        api_port=op.api_port,
        targeted=tuple(t.spec.name for t in snapshot.targeted if t.running),
    )


GUARDIAN_SAYS = {
    "restored": "the host's guardian put back the recorded image; it is healthy",
    "kept": "the host's guardian kept the new image, which runs healthy",
    "failed": "the host's guardian could not get it healthy: check the host",
    "untouched": "the host's guardian freed the lock; nothing had been changed",
    "recorded": "the host's guardian freed the lock",
}


def taken_over(op: Operation, guard: guardian.Guard, result: HostResult, point: ImageRecord | None) -> None:
    """The guardian fired (we were out of touch too long): report what the host did by itself."""
    label = result.host
    result.result = Result.ABANDONED
    result.error = f"ghdeploy was out of touch with the host for more than {guard.lease}s; its guardian took over"
    op.reporter.warn(f"{label}: {result.error}; waiting for it (up to {op.heal_budget:g}s)")
    outcome = None
    try:
        outcome = guard.wait_outcome(op.heal_budget)
    except GhdeployError as exc:
        result.notes.append(f"could not follow the guardian: {exc}")
    if outcome is None:
        result.notes.append("the guardian had not finished when we stopped waiting; see `ghdeploy status`")
    else:
        result.notes.append(GUARDIAN_SAYS.get(outcome, outcome))
        if outcome == "restored" and point is not None:
            result.image_id = point.image_id
    op.reporter.warn(f"{label}: {result.notes[-1]}")


def reconnected(
    op: Operation, conn: Remote, guard: guardian.Guard, result: HostResult, point: ImageRecord | None
) -> bool:
    """After a lost connection mid-switch: True if we are back and still in charge (then we roll
    back ourselves); False if the host is left to its guardian (the result says what we know)."""
    label = result.host
    op.reporter.warn(f"{label}: {result.error}; reconnecting")
    reconnect = getattr(conn, "reconnect", None)
    end = op.clock.now() + guard.lease + 30
    while reconnect is not None:
        try:
            reconnect()
            break
        except GhdeployError:
            if op.clock.now() >= end:
                reconnect = None
                break
            op.clock.sleep(2.0)
    if reconnect is None:
        result.result = Result.UNCONFIRMED
        what = (point.tag or (point.image_id or "")[:19]) if point else "the new image"
        result.notes.append(
            f"could not reach the host again; its guardian puts back {what} by itself within "
            f"{op.heal_budget:g}s of losing us, frees the lock and records it: check with `ghdeploy status`"
        )
        op.reporter.warn(f"{label}: {result.notes[-1]}")
        return False
    op.reporter.info(f"{label}: reconnected")
    try:
        guard.renew()
    except guardian.GuardianTookOver:
        taken_over(op, guard, result, point)
        return False
    return True


def record_start(op: Operation, conn: Remote, result: HostResult) -> tuple[Snapshot, ImageRecord | None]:
    """Record what runs now (pending.json); return it and the rollback point."""
    label = result.host
    op.reporter.step(label, "recording what runs now")
    snapshot = hostops.read_snapshot(conn, op.layout)
    if snapshot.backups:  # a run was stopped while replacing targeted workers
        for note in hostops.recover_backups(conn, snapshot):
            result.notes.append(note)
            op.reporter.warn(f"{label}: {note}")
        snapshot = hostops.read_snapshot(conn, op.layout)
    result.from_image = snapshot.app_image
    unfinished = hostops.read_pending(conn, op.layout)
    point = known_good(unfinished, snapshot)
    if unfinished:
        what = (point.tag or (point.image_id or "?")[:19]) if point else "nothing"
        note = (
            f"found an unfinished {unfinished.get('action') or 'deploy'} from {unfinished.get('time') or '?'} "
            f"by {unfinished.get('operator') or '?'} (ghdeploy was stopped mid-way); the rollback point is "
            f"the image it recorded as running before it: {what}"
        )
        result.notes.append(note)
        op.reporter.warn(f"{label}: {note}")
    # known_good: what to put back if this deploy is stopped too (what runs, or what an earlier
    # unfinished deploy recorded): the chain survives any number of killed deploys.
    pending = pending_record(op, result)
    pending.extra["known_good"] = point.to_dict() if point else None
    hostops.write_pending(conn, op.layout, pending)
    return snapshot, point


def roll_back(
    op: Operation,
    conn: Remote,
    work: Remote,
    guard: guardian.Guard | None,
    snapshot: Snapshot,
    point: ImageRecord | None,
    result: HostResult,
    exc: BaseException,
) -> bool:
    """After a failure mid-switch: put the recorded image back. Returns True when the host is
    left to its guardian instead (it took over, or we could not reach the host again)."""
    label = result.host
    # Any SSH error mid-switch (a channel that cannot open, a command that never ends) is
    # treated as a lost link: we reconnect and check the guardian before touching anything.
    lost = guard is not None and (connection_lost(conn) or isinstance(exc, SSHError))
    if lost and guard is not None and not reconnected(op, conn, guard, result, point):
        return True
    op.reporter.warn(f"{label}: {result.error}; rolling back")
    with phase(result, "rollback", op.clock):
        try:
            result.image_id = restore(op, work, snapshot, point)
            result.result = Result.ROLLED_BACK
            op.reporter.info(f"{label}: rolled back to {point.tag if point else '?'}")
        except guardian.GuardianTookOver:
            assert guard is not None
            taken_over(op, guard, result, point)
            return True
        except GhdeployError as rollback_exc:
            result.result = Result.ROLLBACK_FAILED
            why = unlabel(str(rollback_exc), label)
            result.notes.append(f"rollback failed: {why}")
            op.reporter.warn(f"{label}: ROLLBACK FAILED: {why}")
    return False


def run_host(op: Operation, conn: Remote, target: Target, action: Action | str = Action.DEPLOY) -> HostResult:
    """Deploy `target` to one host; never raises for a host-level failure (it is in the result).

    With a guardian armed for the host (op.guards), every changing command runs fenced by it and
    it is told each phase, so a driver that vanishes mid-way leaves a host that heals itself.
    """
    label = conn.host.label
    result = HostResult(host=label, action=Action(action), target=target)
    start = op.clock.now()
    changed = False
    snapshot: Snapshot | None = None
    point: ImageRecord | None = None
    guard = op.guards.get(label)
    work: Remote = conn
    left_to_guardian = False  # the guardian writes the record (it took over), or nobody can
    try:
        if op.cancel.is_set():
            raise Cancelled()
        with phase(result, "record", op.clock):
            snapshot, point = record_start(op, conn, result)
        with phase(result, "pull", op.clock):
            new_id = ensure_image(op, conn, target)
        if op.cancel.is_set():
            raise Cancelled()
        if guard is not None:
            # Read on the guard's own connection: what the guardian needs is not part of the plan.
            plan = switch_plan(op, guard.conn, snapshot, point, target, new_id)
            guard.arm_switch(plan, guardian.record_lines(history_record(op, result).to_dict(), guard.lease))
            work = guard.fenced(conn)
            guard.phase("changing")
        changed = True
        with phase(result, "drain", op.clock):
            result.notes += drain_all(op, work, snapshot, op.cancel)
        with phase(result, "switch", op.clock):
            switch_to(op, work, snapshot, target.ref, {t.spec.name: target.ref for t in snapshot.targeted})
        with phase(result, "health", op.clock):
            waited = wait_healthy(op, work, op.cancel)
            check_running(work, op, new_id, snapshot.targeted)
        if guard is not None:
            guard.phase("confirmed")
        result.notes += drop_backups(op, work, snapshot)
        result.image_id = new_id
        result.result = Result.SUCCEEDED
        op.reporter.info(f"{label}: {target.label} is healthy ({waited:.2f}s after start)")
    except guardian.GuardianTookOver:
        assert guard is not None
        taken_over(op, guard, result, point)
        left_to_guardian = True
    except (GhdeployError, Cancelled, EOFError, OSError) as caught:
        # paramiko's bare EOFError (or an OSError) of a link that died under a command: the host
        # is lost, as with our own SSHError, never an interrupt (click would say "aborted", 130).
        exc = caught if isinstance(caught, GhdeployError | Cancelled) else link_lost(label, caught)
        interrupted = isinstance(exc, Cancelled)
        result.error = "interrupted" if interrupted else unlabel(str(exc), label)
        if not changed:
            result.result = Result.UNTOUCHED if interrupted else Result.FAILED
            if not interrupted:
                op.reporter.warn(f"{label}: {result.error} (nothing on the host was changed)")
        else:
            assert snapshot is not None
            left_to_guardian = roll_back(op, conn, work, guard, snapshot, point, result, exc)
    finally:
        result.duration = op.clock.now() - start
        if snapshot is not None and not left_to_guardian:
            write_record(op, conn, guard, result, point)
    return result


def write_record(
    op: Operation, conn: Remote, guard: guardian.Guard | None, result: HostResult, point: ImageRecord | None
) -> None:
    """Our own history record and the end of pending.json (with a guardian: in one step it cannot cut)."""
    label = result.host
    try:
        if guard is not None:
            with guard.held() as written:
                hostops.append_record(conn, op.layout, history_record(op, result))
                hostops.clear_pending(conn, op.layout)
                written()
        else:
            hostops.append_record(conn, op.layout, history_record(op, result))
            hostops.clear_pending(conn, op.layout)
    except guardian.GuardianTookOver:
        assert guard is not None
        taken_over(op, guard, result, point)
    except GhdeployError as exc:
        result.notes.append(f"could not write the history record: {exc}")
        op.reporter.warn(f"{label}: could not write the history record: {exc}")
