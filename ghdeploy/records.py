"""Records ghdeploy keeps on a host: history.jsonl, pending.json and the lock's info.json.

Each kind has one dataclass, one reader (`from_dict`/`read_*`) and one writer (`to_dict`/`*_text`).
Every record this version makes carries `schema` (its format version). Readers are tolerant both
ways: a record without `schema` is version 1 (what ghdeploy wrote before the field existed), a
field of the wrong type reads as missing, keys this version does not know (written by a newer
one) are kept in `extra`, and a record read from a host is shown and written back with the keys
it had, no more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 2  # 1: no `schema` key (ghdeploy 0.1.0); 2: `schema` added, otherwise the same
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # every record's timestamps, in UTC


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(TIME_FORMAT)


def iso_ms(when: datetime) -> str:
    """To the millisecond: lets anyone check that two hosts' switches never overlapped."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _number(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


def _object(value: Any) -> dict[str, Any] | None:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else None


def _schema(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


_HISTORY_KEYS = (
    "schema",
    "time",
    "started",
    "finished",
    "action",
    "operator",
    "message",
    "from",
    "to",
    "image_id",
    "result",
    "error",
    "duration_s",
    "ghdeploy",
)


@dataclass(frozen=True)
class HistoryRecord:
    """One deploy or rollback on one host, as a line of history.jsonl."""

    time: str | None = None
    action: str | None = None
    operator: str | None = None
    message: str | None = None
    from_image: dict[str, Any] | None = None  # "from": ImageRecord.to_dict() of what ran before
    to: dict[str, Any] | None = None  # Target.to_dict() of what was to run
    image_id: str | None = None  # what runs at the end
    result: str | None = None
    error: str | None = None
    duration_s: float | None = None
    ghdeploy: str | None = None  # the version that wrote it
    started: str | None = None
    finished: str | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    # The keys a record read from a host had: it is shown and written back with those only.
    present: frozenset[str] | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> HistoryRecord | None:
        if not isinstance(data, dict):
            return None
        return cls(
            time=_text(data.get("time")),
            action=_text(data.get("action")),
            operator=_text(data.get("operator")),
            message=_text(data.get("message")),
            from_image=_object(data.get("from")),
            to=_object(data.get("to")),
            image_id=_text(data.get("image_id")),
            result=_text(data.get("result")),
            error=_text(data.get("error")),
            duration_s=_number(data.get("duration_s")),
            ghdeploy=_text(data.get("ghdeploy")),
            started=_text(data.get("started")),
            finished=_text(data.get("finished")),
            schema=_schema(data.get("schema")),
            extra={k: v for k, v in data.items() if k not in _HISTORY_KEYS},
            present=frozenset(data),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema,
            "time": self.time,
            "started": self.started,
            "finished": self.finished,
            "action": self.action,
            "operator": self.operator,
            "message": self.message,
            "from": self.from_image,
            "to": self.to,
            "image_id": self.image_id,
            "result": self.result,
            "error": self.error,
            "duration_s": self.duration_s,
            "ghdeploy": self.ghdeploy,
        }
        if self.present is not None:
            out = {k: v for k, v in out.items() if k in self.present}
        return {**self.extra, **out}


def history_line(record: HistoryRecord) -> str:
    """The writer of history.jsonl: one line per record, keys sorted."""
    return json.dumps(record.to_dict(), sort_keys=True) + "\n"


def read_history(text: str) -> list[HistoryRecord]:
    """The reader of history.jsonl; a line that is not a record (a torn write, an edit) is skipped."""
    records: list[HistoryRecord] = []
    for line in text.splitlines():
        try:
            record = HistoryRecord.from_dict(json.loads(line))
        except ValueError:
            continue
        if record is not None:
            records.append(record)
    return records


class PendingRecord(HistoryRecord):
    """pending.json: the history record of a deploy still under way (result "in progress").

    It is removed when the deploy ends; one found later names a deploy that was stopped mid-way.
    """

    @classmethod
    def from_dict(cls, data: Any) -> PendingRecord | None:
        record = HistoryRecord.from_dict(data)
        return None if record is None else cls.from_record(record)

    @classmethod
    def from_record(cls, record: HistoryRecord, **changes: Any) -> PendingRecord:
        return cls(**{**{f: getattr(record, f) for f in _FIELDS}, **changes})


_FIELDS = tuple(HistoryRecord.__dataclass_fields__)


def pending_text(record: PendingRecord) -> str:
    return json.dumps(record.to_dict())


def read_pending(text: str) -> PendingRecord | None:
    try:
        return PendingRecord.from_dict(json.loads(text))
    except ValueError:
        return None


_LOCK_KEYS = ("schema", "id", "operator", "action", "tag", "message", "since")


@dataclass(frozen=True)
class LockInfo:
    """The lock's info.json: who holds a host's deploy lock, since when, and why."""

    id: str | None = None  # lets the holder release only its own lock
    operator: str | None = None
    action: str | None = None
    tag: str | None = None
    message: str | None = None
    since: str | None = None
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    present: frozenset[str] | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: Any) -> LockInfo | None:
        if not isinstance(data, dict):
            return None
        return cls(
            id=_text(data.get("id")),
            operator=_text(data.get("operator")),
            action=_text(data.get("action")),
            tag=_text(data.get("tag")),
            message=_text(data.get("message")),
            since=_text(data.get("since")),
            schema=_schema(data.get("schema")),
            extra={k: v for k, v in data.items() if k not in _LOCK_KEYS},
            present=frozenset(data),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": self.schema,
            "id": self.id,
            "operator": self.operator,
            "action": self.action,
            "tag": self.tag,
            "message": self.message,
            "since": self.since,
        }
        if self.present is not None:
            out = {k: v for k, v in out.items() if k in self.present}
        return {**self.extra, **out}


def lock_text(info: LockInfo) -> str:
    return json.dumps(info.to_dict())


def read_lock(text: str) -> LockInfo | None:
    try:
        return LockInfo.from_dict(json.loads(text))
    except ValueError:
        return None
