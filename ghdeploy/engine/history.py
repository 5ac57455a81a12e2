"""The records a host's deploy leaves: its history line, pending.json while it runs, and the
rollback point an unfinished earlier deploy may have recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ghdeploy import __version__, records
from ghdeploy.engine.operation import Operation
from ghdeploy.hostops import ImageRecord, Snapshot
from ghdeploy.records import HistoryRecord, PendingRecord
from ghdeploy.results import HostResult


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
