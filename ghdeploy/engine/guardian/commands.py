"""The guardian's argv, built from its scripts and values computed by the driver, and the records
it may write (four prepared lines it picks one from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy.engine.guardian.scripts import (
    DISARM_SCRIPT,
    FENCE_SCRIPT,
    FINISH_SCRIPT,
    GUARDIAN_SCRIPT,
    HOLD_SCRIPT,
    LAUNCH_SCRIPT,
    LEASE,
    PHASE_SCRIPT,
    PHASES,
    PREPARE_SCRIPT,
    RENEW_SCRIPT,
    STATE_SCRIPT,
    UNHOLD_SCRIPT,
    Argv,
)

if TYPE_CHECKING:
    from ghdeploy.remote_commands import RemoteLayout


def guardian_root(layout: RemoteLayout) -> str:
    return f"{layout.state_dir}/guardian"


def guardian_dir(layout: RemoteLayout, lock_id: str) -> str:
    if not lock_id or not all(c in "0123456789abcdef" for c in lock_id):
        raise ValueError(f"lock id {lock_id!r} is not hex")
    return f"{guardian_root(layout)}/{lock_id}"


@dataclass(frozen=True)
class SwitchPlan:
    """What the guardian needs to put a host back: all computed by the driver before any change."""

    compose_file: str
    app_dir: str
    restore_ref: str  # names exactly the recorded image on the host; "" when nothing ran before
    restore_id: str  # the recorded image's ID; "" when nothing ran before
    new_ref: str
    new_id: str
    stop_timeout: int
    health_timeout: float
    api_port: int
    targeted: tuple[str, ...] = ()  # targeted workers to start again if found stopped


def prepare(layout: RemoteLayout, lock_id: str, lease: int = LEASE) -> Argv:
    return ["sh", "-c", PREPARE_SCRIPT, "sh", guardian_root(layout), guardian_dir(layout, lock_id), str(lease)]


def launch(
    layout: RemoteLayout, lock_id: str, plan: SwitchPlan | None, lease: int | None = None, phase: str | None = None
) -> Argv:
    """Start a guardian: lock-only (plan None) or for the switch (plan given).

    With `lease`, the deadline is renewed first (exit TOOK_OVER if the guardian already fired);
    with `phase`, the phase is set once the new guardian runs: what a renew before and a
    set_phase after would do, in the same order, in one round trip.
    """
    if phase is not None and phase not in PHASES:
        raise ValueError(f"unknown guardian phase {phase!r}")
    g = guardian_dir(layout, lock_id)
    common = [layout.lock_dir, lock_id, layout.history_file, layout.pending_file]
    if plan is None:
        values = ["lock", *common, layout.compose_file, layout.app_dir, "", "", "", "", "", "", ""]
    else:
        values = [
            "switch",
            *common,
            plan.compose_file,
            plan.app_dir,
            plan.restore_ref,
            plan.restore_id,
            plan.new_ref,
            plan.new_id,
            str(int(plan.stop_timeout)),
            str(int(plan.health_timeout)),
            str(int(plan.api_port)),
            *plan.targeted,
        ]
    return ["sh", "-c", LAUNCH_SCRIPT, "sh", g, GUARDIAN_SCRIPT, str(lease) if lease else "", phase or "", *values]


def renew(g: str, lease: int = LEASE) -> Argv:
    return ["sh", "-c", RENEW_SCRIPT, "sh", g, str(lease)]


def set_phase(g: str, phase: str) -> Argv:
    if phase not in PHASES:
        raise ValueError(f"unknown guardian phase {phase!r}")
    return ["sh", "-c", PHASE_SCRIPT, "sh", g, phase]


def fence(g: str, argv: Argv) -> Argv:
    return ["sh", "-c", FENCE_SCRIPT, "sh", g, *argv]


def finish(g: str, layout: RemoteLayout, lock_id: str) -> Argv:
    return ["sh", "-c", FINISH_SCRIPT, "sh", g, layout.lock_dir, lock_id]


def hold(g: str) -> Argv:
    return ["sh", "-c", HOLD_SCRIPT, "sh", g]


def unhold(g: str, recorded: bool) -> Argv:
    return ["sh", "-c", UNHOLD_SCRIPT, "sh", g, "recorded" if recorded else "same"]


def disarm(g: str) -> Argv:
    return ["sh", "-c", DISARM_SCRIPT, "sh", g]


def read_state(g: str) -> Argv:
    return ["sh", "-c", STATE_SCRIPT, "sh", g]


# --- the records the guardian may write ------------------------------------------------------

# Lines of the records file the guardian picks from (1-based, as sed counts).
RECORD_LINES = {"restored": 1, "kept": 2, "failed": 3, "untouched": 4}
OUTCOMES = tuple(RECORD_LINES)


def record_lines(base: dict[str, Any], lease: int = LEASE) -> bytes:
    """The four history records the guardian picks from, one JSON line each (RECORD_LINES).

    `base` is the record the driver would write itself (action, operator, from, to, ...). The
    guardian fills in @@TIME@@, @@PHASE@@ and @@IMAGE_ID@@ with values it checked.
    """
    who = base.get("operator") or "?"
    gone = f"ghdeploy ({who}) stopped answering during the @@PHASE@@ phase (no sign of it for {lease}s)"
    variants = {
        "restored": (f"{gone}; the host put back the recorded image by itself", "@@IMAGE_ID@@"),
        "kept": (f"{gone}; the new image ran healthy, the host kept it", "@@IMAGE_ID@@"),
        "failed": (f"{gone}; the host could not get a healthy api and worker by itself: check it", None),
        "untouched": (f"{gone}, before this host was changed; the host freed its lock", None),
    }
    lines = []
    for outcome in OUTCOMES:
        error, image_id = variants[outcome]
        item = {
            **base,
            "time": "@@TIME@@",
            "result": "abandoned",
            "error": error,
            "image_id": image_id,
            "guardian": outcome,
            "duration_s": None,
        }
        lines.append(json.dumps(item, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()
