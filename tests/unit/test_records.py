"""ghdeploy.records: the host's records read and written by one reader and one writer each.

tests/unit/fixtures/records/ holds records exactly as ghdeploy 0.1.0 wrote them before they had
a `schema` field (made by the code of that time: a history line from before `started` and
`finished` existed, one from after, a pending.json and a lock's info.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from ghdeploy import records
from ghdeploy.engine.host import history_record, pending_record
from ghdeploy.records import SCHEMA_VERSION, HistoryRecord, LockInfo, PendingRecord
from ghdeploy.results import HostResult, Result
from tests.unit.test_dry_run import TARGET, operation

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def test_history_of_the_released_format_reads_typed_and_writes_back_unchanged() -> None:
    text = (FIXTURES / "history.jsonl").read_text()
    old, new = records.read_history(text)
    assert old.schema == new.schema == 1  # no `schema` key: the first format
    assert (old.action, old.result, old.operator, old.message) == ("deploy", "rolled back", "al@laptop", "fix login")
    assert old.started is None and new.started is not None and new.finished is not None
    assert old.from_image is not None and old.from_image["tag"] == "v1"
    assert new.to is not None and new.to["label"] == "ghosthands:v2"
    assert new.duration_s == 0.0 and new.ghdeploy == "0.1.0"
    assert "".join(records.history_line(r) for r in (old, new)) == text  # byte for byte


def test_pending_and_lock_of_the_released_format() -> None:
    pending = records.read_pending((FIXTURES / "pending.json").read_text())
    assert isinstance(pending, PendingRecord)
    assert (pending.schema, pending.result, pending.action) == (1, "in progress", "deploy")
    assert json.loads(records.pending_text(pending)) == json.loads((FIXTURES / "pending.json").read_text())
    lock = records.read_lock((FIXTURES / "lock-info.json").read_text())
    assert lock is not None and lock.schema == 1 and lock.operator == "al@laptop" and lock.id
    assert json.loads(records.lock_text(lock)) == json.loads((FIXTURES / "lock-info.json").read_text())


def test_readers_tolerate_newer_and_broken_records() -> None:
    newer = {"schema": 7, "action": "deploy", "result": "succeeded", "phase_log": [1, 2], "duration_s": 1.5}
    record = HistoryRecord.from_dict(newer)
    assert record is not None and record.schema == 7 and record.extra == {"phase_log": [1, 2]}
    assert record.to_dict() == newer  # a newer version's fields survive a read and a write
    odd = HistoryRecord.from_dict({"operator": 42, "from": "x", "duration_s": "3", "time": None})
    assert odd is not None and odd.operator == "42" and odd.from_image is None and odd.duration_s is None
    assert HistoryRecord.from_dict([1]) is None and HistoryRecord.from_dict("x") is None
    assert records.read_history('{"action": "deploy"}\nnot json\n[1]\n\n{"action": "rollback"}\n')[1].action == (
        "rollback"
    )
    assert records.read_pending("{trunc") is None and records.read_lock("[]") is None
    assert LockInfo.from_dict({"schema": True}) == LockInfo(schema=1)


def test_what_this_version_writes_has_a_schema_and_no_field_twice() -> None:
    op = operation()
    op.message = "why"
    result = HostResult(host="h", target=TARGET, image_id="sha256:" + "2" * 64, result=Result.SUCCEEDED, duration=1.25)
    record = history_record(op, result)
    line = json.loads(records.history_line(record))
    assert line["schema"] == SCHEMA_VERSION and line["message"] == "why" and line["duration_s"] == 1.25
    shown = result.to_dict()
    for key in ("from", "to", "image_id", "result", "error"):  # serialised once, shared by both
        assert line[key] == shown[key]
    pending = json.loads(records.pending_text(pending_record(op, result)))
    assert pending["result"] == "in progress" and pending["schema"] == SCHEMA_VERSION
    lock = json.loads(records.lock_text(LockInfo(id="1", operator="o", since=records.now_iso())))
    assert lock["schema"] == SCHEMA_VERSION and records.parse_time(lock["since"]) is not None
