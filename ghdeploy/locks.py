"""The per-host deploy lock: a directory under GHOSTHANDS_DIR, created atomically with mkdir."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ghdeploy import records
from ghdeploy import remote_commands as rc
from ghdeploy.errors import ExitCode, GhdeployError
from ghdeploy.records import LockInfo

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


class LockHeld(GhdeployError):
    """Another deploy holds the lock of at least one host."""

    exit_code = ExitCode.LOCKED


def lock_info(operator: str, action: str, tag: str | None, message: str | None) -> LockInfo:
    """The record of a lock this run is about to take (with a fresh id: only its holder releases it)."""
    return LockInfo(
        id=secrets.token_hex(8),  # lets the holder release only its own lock
        operator=operator,
        action=action,
        tag=tag,
        message=message,
        since=rc.HOST_NOW,  # the host stamps its own time when it takes the lock
    )


def age(since: object) -> str:
    if not since or not isinstance(since, str):
        return "unknown age"
    try:
        then = datetime.strptime(since, records.TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "unknown age"
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m ago"


def describe(holder: LockInfo) -> str:
    who, since = holder.operator or "?", holder.since or "?"
    parts = [f"held by {who} since {since} ({age(holder.since)})"]
    if holder.action:
        parts.append(f"{holder.action} of {holder.tag or '?'}")
    if holder.message:
        parts.append(f"message: {holder.message!r}")
    return ", ".join(parts)


def acquire(remote: Remote, layout: rc.RemoteLayout, info: LockInfo) -> LockInfo | None:
    """Take the lock; None on success, else the holder's record."""
    result = remote.run(rc.acquire_lock(layout), stdin=records.lock_text(info).encode(), timeout=30)
    if result.rc == 0:
        return None
    if result.rc == rc.LOCK_HELD_CODE:
        try:
            holder = json.loads(result.stdout or "{}")
        except ValueError:
            holder = {}
        from ghdeploy import hostdata

        return LockInfo.from_dict(hostdata.record(holder) or {}) or LockInfo()
    raise GhdeployError(f"{remote.host.label}: could not take the deploy lock: {result.stderr.strip()[-200:]}")


def release(remote: Remote, layout: rc.RemoteLayout, lock_id: str | None = None) -> bool:
    """Free the lock (with `lock_id`: only if it is still that one). False if another holds it now."""
    result = remote.run(rc.release_lock(layout, lock_id), timeout=30)
    if result.rc == rc.LOCK_HELD_CODE:
        return False
    if result.rc != 0:
        raise GhdeployError(f"{remote.host.label}: could not release the deploy lock: {result.stderr.strip()[-200:]}")
    return True


def read(remote: Remote, layout: rc.RemoteLayout) -> LockInfo | None:
    """The lock's record, or None when the host's lock is free (an unreadable one is kept in `extra`)."""
    return from_text(remote.run(rc.read_lock(layout), timeout=30).stdout)


def from_text(text: str) -> LockInfo | None:
    """What rc.read_lock printed, as a record (None: the lock is free)."""
    from ghdeploy import hostdata
    from ghdeploy.host_records import parse_json

    data = parse_json(text)
    if data is None:
        return None
    return LockInfo.from_dict(hostdata.record(data))
