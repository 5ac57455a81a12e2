"""The dry run: the real per-host sequence, run against a simulated host and recorded.

Nothing here knows the steps of a deploy. `run_host` (and the lock around it) runs unchanged
over a RecordingRemote whose backend is a SimulatedHost: reads go to the real host, changes
are only recorded. So the plan is, by construction, the commands a real run would send.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from ghdeploy import locks
from ghdeploy.engine.host import Operation, run_host
from ghdeploy.engine.prepull import prepull
from ghdeploy.progress import RecordingReporter
from ghdeploy.results import Target
from ghdeploy.transports.base import Remote
from ghdeploy.transports.recording import RecordingRemote, collapse_polls
from ghdeploy.transports.simulated import SimulatedHost
from ghdeploy.waiting import Clock

PLACEHOLDER_LOCK_ID = "X" * 16  # a real run's lock id is random; the plan shows this instead


def _placeholder(nbytes: int) -> str:
    return "X" * (2 * nbytes)


def instant_clock() -> Clock:
    """A clock whose sleeps take no time: the simulated host never makes anyone wait."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return Clock(sleep=sleep, now=lambda: now[0])


def plan_host(op: Operation, conn: Remote, target: Target, action: str) -> dict[str, Any]:
    """What `action` of `target` would do on this host: its commands, in order, and a summary.

    `conn` is only read from. The keys are those of the `plan` items in the --json document.
    """
    label = conn.host.label
    simulated = SimulatedHost(conn, op.layout, {target.ref: target.digest})
    recorder = RecordingRemote(simulated)
    steps = RecordingReporter()
    dry = dataclasses.replace(
        op, reporter=steps, clock=instant_clock(), cancel=threading.Event(), token=_placeholder, present={}
    )
    holder = locks.read(conn, op.layout)
    try:
        info = locks.lock_info(op.operator, action, target.label, op.message)
        locks.acquire(recorder, op.layout, dataclasses.replace(info, id=PLACEHOLDER_LOCK_ID))
        # A deploy pulls on every host before any host is switched (engine/prepull.py): the
        # same function, on this host alone, so the plan keeps the real order of commands.
        stopped = (
            prepull(dry, {label: recorder}, [label], lambda _label: target, action) if action == "deploy" else None
        )
        result = stopped.hosts[0] if stopped is not None else run_host(dry, recorder, target, action)
        locks.release(recorder, op.layout, PLACEHOLDER_LOCK_ID)
    finally:
        simulated.close()
    if not result.succeeded:
        op.reporter.warn(f"{label}: in the dry run the {action} ends '{result.result}': {result.error}")
    for note in result.notes:
        op.reporter.info(f"{label}: dry run: {note}")
    commands = collapse_polls(recorder.recorded)
    current = result.from_image.to_dict() if result.from_image else None
    return {
        "host": label,
        "current": current,
        "lock": holder,
        "rollback_to": current if action == "deploy" else target.to_dict(),
        "commands": [c.shown for c in commands],
        "steps": [c.to_dict() for c in commands],
        "summary": [message for kind, host, message in steps.events if kind == "step" and host == label],
    }
