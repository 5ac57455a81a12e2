"""channel_io against a channel with paramiko's internals, faked: what goes out, in which state."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ghdeploy.transports.ssh import channel_io


class FakeTransport:
    def __init__(self, dead: bool = False) -> None:
        self.clear_to_send = threading.Event()
        self.clear_to_send.set()
        self.clear_to_send_lock = threading.Lock()
        self.sent: list[bytes] = []
        self.dead = dead

    def is_active(self) -> bool:
        return True

    def _send_message(self, message: Any) -> None:
        if self.dead:
            raise EOFError()  # what paramiko's packetizer raises when the socket write fails
        self.sent.append(message.asbytes())


class FakeChannel:
    def __init__(self, transport: FakeTransport, window: int = 1 << 20) -> None:
        self.transport = transport
        self.lock = threading.Lock()
        self.out_buffer_cv = threading.Condition(self.lock)
        self.closed = False
        self.eof_sent = False
        self.active = True
        self.remote_chanid = 7
        self.out_window_size = window

    def get_transport(self) -> FakeTransport:
        return self.transport

    def _send_eof(self) -> Any:
        import paramiko

        self.eof_sent = True
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_CHANNEL_EOF)
        m.add_int(self.remote_chanid)
        return m

    def _wait_for_send_window(self, size: int) -> int:
        size = min(size, self.out_window_size, 100)
        self.out_window_size -= size
        return size

    def close(self) -> None:
        if self.transport.dead:
            raise EOFError()


def test_eof_goes_out_once_and_never_on_a_closed_channel() -> None:
    transport = FakeTransport()
    chan = FakeChannel(transport)
    channel_io.send_eof(chan)  # type: ignore[arg-type]
    channel_io.send_eof(chan)  # type: ignore[arg-type]
    assert len(transport.sent) == 1
    closed = FakeChannel(transport)
    closed.closed = True
    channel_io.send_eof(closed)  # type: ignore[arg-type]
    assert len(transport.sent) == 1


def test_data_goes_out_in_window_sized_messages_in_order() -> None:
    transport = FakeTransport()
    chan = FakeChannel(transport)
    channel_io.send_all(chan, bytes(range(250)))  # type: ignore[arg-type]
    assert len(transport.sent) == 3
    assert b"".join(m[9:] for m in transport.sent) == bytes(range(250))  # byte, int, string length


def test_data_for_a_closed_channel_is_an_oserror_and_sends_nothing() -> None:
    transport = FakeTransport()
    chan = FakeChannel(transport)
    chan.closed = True
    with pytest.raises(OSError):
        channel_io.send_all(chan, b"token")  # type: ignore[arg-type]
    assert transport.sent == []


def test_a_dead_socket_never_lets_a_bare_eoferror_out() -> None:
    # click would turn it into "aborted" and exit 130
    chan = FakeChannel(FakeTransport(dead=True))
    channel_io.send_eof(chan)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        channel_io.send_all(chan, b"data")  # type: ignore[arg-type]
    channel_io.close(chan)  # type: ignore[arg-type]
