"""The per-host deploy lock: a directory under GHOSTHANDS_DIR, created atomically with mkdir."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ghdeploy import records
from ghdeploy import remote_commands as rc
from ghdeploy.errors import ExitCode, GhdeployError
from ghdeploy.records import LockInfo

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


class LockHeld(GhdeployError):
    """Another deploy holds the lock of at least one host."""

    exit_code = ExitCode.LOCKED


def lock_info(operator: str, action: str, tag: str | None, message: str | None) -> dict[str, Any]:
    info = LockInfo(
        id=secrets.token_hex(8),  # lets the holder release only its own lock
        operator=operator,
        action=action,
        tag=tag,
        message=message,
        since=rc.HOST_NOW,  # the host stamps its own time when it takes the lock
    )
    return info.to_dict()


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


def describe(holder: dict[str, Any]) -> str:
    who, since = holder.get("operator") or "?", holder.get("since") or "?"
    parts = [f"held by {who} since {since} ({age(holder.get('since'))})"]
    if holder.get("action"):
        parts.append(f"{holder['action']} of {holder.get('tag') or '?'}")
    if holder.get("message"):
        parts.append(f"message: {holder['message']!r}")
    return ", ".join(parts)


def acquire(remote: Remote, layout: rc.RemoteLayout, info: dict[str, Any]) -> dict[str, Any] | None:
    """Take the lock; None on success, else the holder's record."""
    record = LockInfo.from_dict(info) or LockInfo()
    result = remote.run(rc.acquire_lock(layout), stdin=records.lock_text(record).encode(), timeout=30)
    if result.rc == 0:
        return None
    if result.rc == rc.LOCK_HELD_CODE:
        try:
            holder = json.loads(result.stdout or "{}")
        except ValueError:
            holder = {}
        from ghdeploy import hostdata

        return hostdata.record(holder) or {}
    raise GhdeployError(f"{remote.host.label}: could not take the deploy lock: {result.stderr.strip()[-200:]}")


def release(remote: Remote, layout: rc.RemoteLayout, lock_id: str | None = None) -> bool:
    """Free the lock (with `lock_id`: only if it is still that one). False if another holds it now."""
    result = remote.run(rc.release_lock(layout, lock_id), timeout=30)
    if result.rc == rc.LOCK_HELD_CODE:
        return False
    if result.rc != 0:
        raise GhdeployError(f"{remote.host.label}: could not release the deploy lock: {result.stderr.strip()[-200:]}")
    return True


def read(remote: Remote, layout: rc.RemoteLayout) -> dict[str, Any] | None:
    from ghdeploy import hostdata
    from ghdeploy.hostops import read_json

    data = read_json(remote, rc.read_lock(layout))
    if data is None:
        return None
    info = LockInfo.from_dict(hostdata.record(data))
    return info.to_dict() if info else None
