"""`ghdeploy lock status|release`: who holds each host's deploy lock; free a stale one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy import locks
from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions, layout_of
from ghdeploy.progress import Reporter
from ghdeploy.records import LockInfo

if TYPE_CHECKING:
    from ghdeploy.transports.ssh import Connection


@dataclass
class HostLock:
    host: str
    holder: LockInfo | None = None
    error: str | None = None
    released: bool = False

    def to_dict(self) -> dict[str, Any]:
        holder = self.holder.to_dict() if self.holder is not None else None
        return {"host": self.host, "holder": holder, "error": self.error, "released": self.released}


def lock_status(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostLock]:
    layout = layout_of(config)
    return per_host(
        config,
        opts,
        reporter,
        lambda conn: HostLock(host=conn.host.label, holder=locks.read(conn, layout)),
        lambda label, exc: HostLock(host=label, error=str(exc)),
    )


def lock_release(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostLock]:
    layout = layout_of(config)

    def release(conn: Connection) -> HostLock:
        holder = locks.read(conn, layout)
        released = False
        if holder is not None:
            # Only the lock shown here: if its holder finished and another deploy took the lock
            # meanwhile, that new lock (another id) stays. A record without an id (an older
            # ghdeploy) is matched by its time; an unreadable one is removed as shown.
            released = locks.release(conn, layout, holder.id or holder.since or None)
        return HostLock(host=conn.host.label, holder=holder, released=released)

    return per_host(
        config, opts, reporter, release, lambda label, exc: HostLock(host=label, error=str(exc)), read_only=False
    )
