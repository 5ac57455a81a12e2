"""The deploy sequence on one host, written once and run over any transport.

Per host: record what runs, make the new image present (login on stdin + pull, digest checked),
drain the worker, switch (`compose up -d`, targeted workers), wait for /health, and on any
failure after the switch began put back the exact image recorded first.

The steps live beside this module: operation.py (what every step needs), pull.py, switch.py
(drain, stop, up, replace, health), checks.py, restore.py, history.py (the records) and
takeover.py (the host's guardian). Here is their order, the rollback and the history record.
"""

from __future__ import annotations

from ghdeploy import hostops
from ghdeploy.engine import guardian
from ghdeploy.engine.checks import WORKER_SETTLE, check_running
from ghdeploy.engine.history import history_record, known_good, pending_record
from ghdeploy.engine.operation import Operation, phase
from ghdeploy.engine.pull import ensure_image
from ghdeploy.engine.restore import naming_exactly, restore, restore_ref
from ghdeploy.engine.switch import connection_lost, drain_all, drop_backups, link_lost, switch_to, wait_healthy
from ghdeploy.engine.takeover import reconnected, switch_plan, taken_over
from ghdeploy.errors import GhdeployError, SSHError
from ghdeploy.hostops import ImageRecord, Snapshot
from ghdeploy.results import Action, HostResult, Result, Target, unlabel
from ghdeploy.transports.base import Remote
from ghdeploy.waiting import Cancelled

# The steps are looked up here by run_host (tests replace them on this module), and callers of
# the engine keep one import.
__all__ = [
    "WORKER_SETTLE",
    "HostResult",
    "Operation",
    "Target",
    "check_running",
    "drain_all",
    "drop_backups",
    "ensure_image",
    "history_record",
    "known_good",
    "naming_exactly",
    "pending_record",
    "phase",
    "restore",
    "restore_ref",
    "run_host",
    "switch_plan",
    "switch_to",
    "unlabel",
    "wait_healthy",
]


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


def _arm_guardian(
    op: Operation,
    conn: Remote,
    guard: guardian.Guard,
    snapshot: Snapshot,
    point: ImageRecord | None,
    target: Target,
    new_id: str,
    result: HostResult,
) -> Remote:
    """Hand the host to a guardian that can put `point` back; return the fenced transport."""
    # Read on the guard's own connection: what the guardian needs is not part of the plan.
    plan = switch_plan(op, guard.conn, snapshot, point, target, new_id)
    guard.arm_switch(plan, guardian.record_lines(history_record(op, result).to_dict(), guard.lease))
    return guard.fenced(conn)  # the guardian is in phase `changing` already


def _switch(op: Operation, work: Remote, snapshot: Snapshot, target: Target, new_id: str, result: HostResult) -> float:
    """Drain, switch to the new image, and check it: seconds /health took."""
    with phase(result, "drain", op.clock):
        result.notes += drain_all(op, work, snapshot, op.cancel)
    with phase(result, "switch", op.clock):
        switch_to(op, work, snapshot, target.ref, {t.spec.name: target.ref for t in snapshot.targeted})
    with phase(result, "health", op.clock):
        waited = wait_healthy(op, work, op.cancel)
        check_running(work, op, new_id, snapshot.targeted)
    return waited


def _present_image(op: Operation, conn: Remote, target: Target) -> str:
    """The new image's ID on the host: from the fleet's pre-pull when it made this very target
    present there (taken once), else made present now."""
    pulled = op.present.pop(conn.host.label, None)
    if pulled is not None and pulled[0] == target:
        op.reporter.step(conn.host.label, f"{target.label} already on host")
        return pulled[1]
    return ensure_image(op, conn, target)


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
            new_id = _present_image(op, conn, target)
        if op.cancel.is_set():
            raise Cancelled()
        if guard is not None:
            work = _arm_guardian(op, conn, guard, snapshot, point, target, new_id, result)
        changed = True
        waited = _switch(op, work, snapshot, target, new_id, result)
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
        if not changed:
            _failed_untouched(op, result, exc)
        else:
            assert snapshot is not None
            result.error = "interrupted" if isinstance(exc, Cancelled) else unlabel(str(exc), label)
            left_to_guardian = roll_back(op, conn, work, guard, snapshot, point, result, exc)
    finally:
        result.duration = op.clock.now() - start
        if snapshot is not None and not left_to_guardian:
            write_record(op, conn, guard, result, point)
    return result


def _failed_untouched(op: Operation, result: HostResult, exc: BaseException) -> None:
    """Stopped before anything on the host changed: nothing to put back."""
    interrupted = isinstance(exc, Cancelled)
    result.error = "interrupted" if interrupted else unlabel(str(exc), result.host)
    result.result = Result.UNTOUCHED if interrupted else Result.FAILED
    if not interrupted:
        op.reporter.warn(f"{result.host}: {result.error} (nothing on the host was changed)")


def write_record(
    op: Operation, conn: Remote, guard: guardian.Guard | None, result: HostResult, point: ImageRecord | None
) -> None:
    """Our own history record and the end of pending.json (with a guardian: in one step it cannot cut)."""
    label = result.host
    try:
        if guard is not None:
            with guard.held() as written:
                hostops.append_record(conn, op.layout, history_record(op, result), clear_pending=True)
                written()
        else:
            hostops.append_record(conn, op.layout, history_record(op, result), clear_pending=True)
    except guardian.GuardianTookOver:
        assert guard is not None
        taken_over(op, guard, result, point)
    except GhdeployError as exc:
        result.notes.append(f"could not write the history record: {exc}")
        op.reporter.warn(f"{label}: could not write the history record: {exc}")
