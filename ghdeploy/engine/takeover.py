"""The driver and the host's guardian: what the guardian needs to put the host back (computed
before any change), and what to report when we lost the host or the guardian took over."""

from __future__ import annotations

from ghdeploy.engine import guardian
from ghdeploy.engine.operation import Operation
from ghdeploy.engine.restore import restore_ref
from ghdeploy.errors import GhdeployError, OperationFailed
from ghdeploy.hostops import ImageRecord, Snapshot
from ghdeploy.results import HostResult, Result, Target
from ghdeploy.transports.base import Remote


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
