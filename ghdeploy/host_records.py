"""The records a host keeps (history.jsonl, pending.json), read and written through a transport.

The formats are records.py's (one reader and one writer each); this moves their text to and from a host.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ghdeploy import records
from ghdeploy import remote_commands as rc

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


def append_record(
    remote: Remote,
    layout: rc.RemoteLayout,
    record: records.HistoryRecord | dict[str, Any],
    *,
    clear_pending: bool = False,
) -> None:
    """Append a history record; with `clear_pending`, end pending.json in the same command."""
    if not isinstance(record, records.HistoryRecord):  # a record built as a dict goes through the same writer
        record = records.HistoryRecord.from_dict(record) or records.HistoryRecord()
    line = records.history_line(record)
    argv = rc.append_file(layout.state_dir, layout.history_file, layout.pending_file if clear_pending else None)
    remote.check(argv, stdin=line.encode())


def write_pending(remote: Remote, layout: rc.RemoteLayout, record: records.PendingRecord | dict[str, Any]) -> None:
    if not isinstance(record, records.PendingRecord):
        record = records.PendingRecord.from_dict(record) or records.PendingRecord()
    text = records.pending_text(record)
    remote.check(rc.write_file(layout.state_dir, layout.pending_file), stdin=text.encode())


def clear_pending(remote: Remote, layout: rc.RemoteLayout) -> None:
    remote.run(rc.remove_file(layout.pending_file))


def read_json(remote: Remote, argv: list[str]) -> dict[str, Any] | None:
    """Run a command that prints a JSON object, or nothing when there is none."""
    return parse_json(remote.run(argv, timeout=30).stdout)


def parse_json(text: str) -> dict[str, Any] | None:
    """A record file's text: None when empty, {"unreadable": ...} when it is not JSON."""
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return data if isinstance(data, dict) else {}


def read_pending(remote: Remote, layout: rc.RemoteLayout) -> dict[str, Any] | None:
    return pending_from(remote.run(rc.read_file(layout.pending_file), timeout=30).stdout)


def pending_from(text: str) -> dict[str, Any] | None:
    data = parse_json(text)
    return clean_record(data) if data else data


def read_history(
    remote: Remote, layout: rc.RemoteLayout, limit: int = 20, warnings: list[str] | None = None
) -> list[dict[str, Any]]:
    """The last `limit` records of the host's history; a line that is not a record is skipped,
    with a warning appended to `warnings` (a half-written line, a hand edit)."""
    text = remote.run(rc.tail_file(layout.history_file, limit), timeout=60).stdout
    records, problems = parse_history(text)
    if warnings is not None:
        warnings += [f"{remote.host.label}: {layout.history_file}: {p}" for p in problems]
    return records


def parse_history(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if isinstance(item, dict):
            records.append(clean_record(item))
        else:
            problems.append(f"skipped line {number} of the last read: not a JSON record ({line[:60]!r})")
    return records, problems


def clean_record(data: dict[str, Any]) -> dict[str, Any]:
    """A history/pending record with the types readers rely on (a host's file may hold anything)."""
    from ghdeploy import hostdata

    record = records.HistoryRecord.from_dict(hostdata.record(data))
    return record.to_dict() if record else {}
