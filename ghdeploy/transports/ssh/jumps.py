"""Jump-host connections shared by every target behind them.

A fleet behind one bastion must not cost one SSH session on the bastion per target: OpenSSH
with ProxyJump and no ControlMaster opens one per target, and sshd's MaxStartups (10 by
default) then throttles a parallel connect to a few dozen hosts. Here every target whose route
starts with the same jump hops, opened with the same settings, rides ONE connection per hop:
each target's own SSH session is a `direct-tcpip` channel inside it.

The key includes the settings (known_hosts, key, whether a new host key may be accepted), so a
connection opened under one policy is never reused under another. Leases are counted: the
jump connection closes when the last target behind it closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class _Transport(Protocol):
    def is_active(self) -> bool: ...


class JumpClient(Protocol):
    """What SharedJumps needs of a connection (paramiko.SSHClient is one)."""

    def get_transport(self) -> _Transport | None: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=JumpClient)


@dataclass
class _Entry(Generic[C]):
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: C | None = None
    users: int = 0


class SharedJumps(Generic[C]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry[C]] = {}

    def acquire(self, key: Hashable, open_client: Callable[[], C]) -> C:
        """The live connection for `key`, opened with open_client() by the first caller.

        Callers for the same key wait for that first open rather than opening their own. If it
        fails, each waiting caller tries once itself (and gets an error naming its own host).
        """
        with self._lock:
            entry: _Entry[C] = self._entries.setdefault(key, _Entry())
            entry.users += 1
        try:
            with entry.lock:
                if entry.client is None or not _alive(entry.client):
                    if entry.client is not None:
                        entry.client.close()
                        entry.client = None
                    entry.client = open_client()
                return entry.client
        except BaseException:
            self.release(key)
            raise

    def release(self, key: Hashable) -> None:
        """One user fewer; the last one closes the connection."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[key]
            client, entry.client = entry.client, None
        if client is not None:
            client.close()

    def open_count(self) -> int:
        """How many jump connections are open (for tests and the scaling figures)."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.client is not None)


def _alive(client: JumpClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()
