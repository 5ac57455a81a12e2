"""SharedJumps: one connection per jump chain and settings, opened once, closed by the last user."""

from __future__ import annotations

import threading
import time

import pytest

from ghdeploy.transports.ssh.jumps import SharedJumps


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeClient:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.closed = False

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.closed = True
        self.transport.active = False


def test_concurrent_users_share_one_open_and_the_last_release_closes_it() -> None:
    jumps: SharedJumps[FakeClient] = SharedJumps()
    opened: list[FakeClient] = []

    def open_client() -> FakeClient:
        time.sleep(0.05)  # a slow handshake: the other threads must wait for it, not open their own
        client = FakeClient()
        opened.append(client)
        return client

    got: list[FakeClient] = []
    threads = [threading.Thread(target=lambda: got.append(jumps.acquire("bastion", open_client))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1 and all(client is opened[0] for client in got)
    assert jumps.open_count() == 1
    for _ in range(7):
        jumps.release("bastion")
    assert not opened[0].closed
    jumps.release("bastion")
    assert opened[0].closed and jumps.open_count() == 0


def test_different_keys_get_different_connections() -> None:
    jumps: SharedJumps[FakeClient] = SharedJumps()
    a = jumps.acquire(("settings-1", "bastion"), FakeClient)
    b = jumps.acquire(("settings-2", "bastion"), FakeClient)
    assert a is not b and jumps.open_count() == 2


def test_a_dead_connection_is_replaced() -> None:
    jumps: SharedJumps[FakeClient] = SharedJumps()
    first = jumps.acquire("bastion", FakeClient)
    first.get_transport().active = False
    second = jumps.acquire("bastion", FakeClient)
    assert second is not first and first.closed


def test_a_failed_open_is_not_cached_and_gives_its_lease_back() -> None:
    jumps: SharedJumps[FakeClient] = SharedJumps()

    def refuse() -> FakeClient:
        raise OSError("connection refused")

    with pytest.raises(OSError):
        jumps.acquire("bastion", refuse)
    assert jumps.open_count() == 0
    client = jumps.acquire("bastion", FakeClient)
    jumps.release("bastion")
    assert client.closed  # the failed attempt left no user count behind
