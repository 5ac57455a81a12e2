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
from ghdeploy.errors import GhdeployError, OperationFailed
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

    def image_services(self, host: str) -> list[str]:
        return self.host_services.get(host) or ["api", "worker"]


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
            lambda: health_ok(http, op.api_port),
            op.health_timeout,
            op.clock,
            cancel,
            first=HEALTH_INTERVAL / 2,
            max_interval=HEALTH_INTERVAL,
        )
    if not healthy:
        raise OperationFailed(f"{label}: /health did not answer 200 within {op.health_timeout:g}s")
    return op.clock.now() - start


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


def restore(op: Operation, conn: Remote, snapshot: Snapshot) -> str:
    """Put back exactly what `snapshot` recorded; health-check it. Returns the image ID. Not cancellable.

    A targeted worker whose backup is still there gets that very container back (renamed, and
    started if it ran); one not replaced yet keeps its container; only one replaced and already
    checked is recreated from its recorded configuration on its recorded image.
    """
    label = conn.host.label
    previous = snapshot.app_image
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


def run_host(op: Operation, conn: Remote, target: Target, action: Action | str = Action.DEPLOY) -> HostResult:
    """Deploy `target` to one host; never raises for a host-level failure (it is in the result)."""
    label = conn.host.label
    result = HostResult(host=label, action=Action(action), target=target)
    start = op.clock.now()
    changed = False
    snapshot: Snapshot | None = None
    try:
        if op.cancel.is_set():
            raise Cancelled()
        with phase(result, "record", op.clock):
            op.reporter.step(label, "recording what runs now")
            snapshot = hostops.read_snapshot(conn, op.layout)
            if snapshot.backups:  # a run was stopped while replacing targeted workers
                for note in hostops.recover_backups(conn, snapshot):
                    result.notes.append(note)
                    op.reporter.warn(f"{label}: {note}")
                snapshot = hostops.read_snapshot(conn, op.layout)
            result.from_image = snapshot.app_image
            unfinished = hostops.read_pending(conn, op.layout)
            if unfinished:
                note = (
                    f"found an unfinished {unfinished.get('action') or 'deploy'} from {unfinished.get('time') or '?'} "
                    f"by {unfinished.get('operator') or '?'} (ghdeploy was stopped mid-way); what runs now is the rollback point"
                )
                result.notes.append(note)
                op.reporter.warn(f"{label}: {note}")
            hostops.write_pending(conn, op.layout, pending_record(op, result))
        with phase(result, "pull", op.clock):
            new_id = ensure_image(op, conn, target)
        if op.cancel.is_set():
            raise Cancelled()
        changed = True
        with phase(result, "drain", op.clock):
            result.notes += drain_all(op, conn, snapshot, op.cancel)
        with phase(result, "switch", op.clock):
            switch_to(op, conn, snapshot, target.ref, {t.spec.name: target.ref for t in snapshot.targeted})
        with phase(result, "health", op.clock):
            waited = wait_healthy(op, conn, op.cancel)
            check_running(conn, op, new_id, snapshot.targeted)
        result.notes += drop_backups(op, conn, snapshot)
        result.image_id = new_id
        result.result = Result.SUCCEEDED
        op.reporter.info(f"{label}: {target.label} is healthy ({waited:.2f}s after start)")
    except (GhdeployError, Cancelled) as exc:
        interrupted = isinstance(exc, Cancelled)
        result.error = "interrupted" if interrupted else unlabel(str(exc), label)
        if not changed:
            result.result = Result.UNTOUCHED if interrupted else Result.FAILED
            if not interrupted:
                op.reporter.warn(f"{label}: {result.error} (nothing on the host was changed)")
        else:
            op.reporter.warn(f"{label}: {result.error}; rolling back")
            assert snapshot is not None
            with phase(result, "rollback", op.clock):
                try:
                    result.image_id = restore(op, conn, snapshot)
                    result.result = Result.ROLLED_BACK
                    op.reporter.info(f"{label}: rolled back to {snapshot.app_image.tag if snapshot.app_image else '?'}")
                except GhdeployError as rollback_exc:
                    result.result = Result.ROLLBACK_FAILED
                    why = unlabel(str(rollback_exc), label)
                    result.notes.append(f"rollback failed: {why}")
                    op.reporter.warn(f"{label}: ROLLBACK FAILED: {why}")
    finally:
        result.duration = op.clock.now() - start
        if snapshot is not None:
            try:
                hostops.append_record(conn, op.layout, history_record(op, result))
                hostops.clear_pending(conn, op.layout)
            except GhdeployError as exc:
                result.notes.append(f"could not write the history record: {exc}")
                op.reporter.warn(f"{label}: could not write the history record: {exc}")
    return result
