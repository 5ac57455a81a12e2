"""Send data and EOF on a paramiko channel without racing the server's close.

Why: paramiko builds a channel's DATA or EOF message under the channel's lock but sends it after
releasing that lock (so a re-key cannot deadlock). When the remote command ends in that gap, the
transport thread answers the server's CLOSE with our CLOSE first, and our EOF (or DATA) reaches
sshd after it: OpenSSH then drops the WHOLE connection ("ieof packet referred to nonexistent
channel 4"), and every other command and tunnel on it fails with "connection closed". On a loaded
machine (many threads waiting for the GIL) this hit about one `status` in ten on the testbed
(seen in the hosts' sshd logs and paramiko's debug log).

Here the message is built and put on the wire while the channel's lock is held, so the transport
thread's CLOSE (which takes the same lock) always follows it; a channel that is already closed
gets nothing. The re-key deadlock paramiko avoids is avoided differently: we wait for key
exchange to finish BEFORE taking the channel's lock, and never wait for it while holding it.

Uses paramiko internals (Channel.lock/closed/eof_sent/_send_eof, Transport.clear_to_send(_lock)/
_send_message; stable since paramiko 2.x); without them it falls back to paramiko's own calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

_STEP = 0.1  # seconds: how long one wait may block before the state is looked at again
_INTERNALS = ("lock", "closed", "eof_sent", "_send_eof", "remote_chanid", "out_buffer_cv", "_wait_for_send_window")


def _ordered(chan: paramiko.Channel) -> Any | None:
    """The channel's transport, if both have the internals the ordered send needs."""
    get_transport = getattr(chan, "get_transport", None)
    transport: Any = get_transport() if get_transport is not None else None
    if transport is None or not all(hasattr(chan, name) for name in _INTERNALS):
        return None
    if not all(hasattr(transport, name) for name in ("clear_to_send", "clear_to_send_lock", "_send_message")):
        return None
    return transport


def _send_locked(
    chan: Any, transport: Any, build: Callable[[], Any], deadline: float, ready: Callable[[], bool] | None = None
) -> Any:
    """Run `build()` and send what it returns, holding the channel's lock and the transport's
    send lock, once no key exchange is under way. `build` returns None (nothing to send), or a
    (message, result) pair; the result is returned. `ready()`, called with the channel's lock
    alone, may wait (releasing that lock) and say False: look again. Raises OSError when the
    link is gone."""
    while True:
        if not transport.is_active():
            raise OSError("connection closed")
        if time.monotonic() > deadline:
            raise OSError("timed out sending on the channel")
        # Never wait for a key exchange while holding the channel's lock (paramiko's deadlock).
        if not transport.clear_to_send.wait(_STEP):
            continue
        with chan.lock:
            if ready is not None and not ready():
                continue
            if not transport.clear_to_send_lock.acquire(timeout=_STEP):
                continue
            try:
                if not transport.clear_to_send.is_set():
                    continue  # a key exchange began meanwhile: wait for it outside the lock
                built = build()
                if built is None:
                    return None
                message, result = built
                transport._send_message(message)
                return result
            finally:
                transport.clear_to_send_lock.release()


def send_eof(chan: paramiko.Channel, timeout: float = 30.0) -> None:
    """`chan.shutdown_write()`, but never after our CLOSE (see the module docstring)."""
    transport = _ordered(chan)
    if transport is None:
        with contextlib.suppress(OSError, EOFError):
            chan.shutdown_write()
        return
    c: Any = chan

    def build() -> tuple[Any, None] | None:
        if c.closed or c.eof_sent or not c.active:
            return None  # closed already: our CLOSE carried (or will carry) the EOF
        return c._send_eof(), None

    try:
        _send_locked(c, transport, build, time.monotonic() + timeout)
    except (OSError, EOFError):
        # The link is gone (paramiko's socket write raises a bare EOFError): nobody to tell, and
        # the caller's read sees the end. An EOFError let out here once reached click, which
        # turned it into "aborted" and exit 130.
        return


def send_all(chan: paramiko.Channel, data: bytes, timeout: float = 30.0) -> None:
    """`chan.sendall(data)`, but never after our CLOSE. Raises OSError once the channel is closed
    (the command ended without reading all of it), as sendall does."""
    transport = _ordered(chan)
    if transport is None:
        chan.sendall(data)
        return
    import paramiko

    c: Any = chan
    view = memoryview(data)

    def shut() -> bool:
        return bool(c.closed or c.eof_sent or not c.active)

    def ready() -> bool:
        # Room in the peer's window; waiting releases the channel's lock (a Condition on it),
        # and happens without the send lock, so the transport thread can take the adjust.
        if shut():
            raise OSError("Socket is closed")
        if c.out_window_size > 0:
            return True
        c.out_buffer_cv.wait(_STEP)
        return False

    def build() -> tuple[paramiko.Message, int]:
        if shut():
            raise OSError("Socket is closed")
        size = c._wait_for_send_window(len(view))  # room is there: returns at once
        if size == 0:
            raise OSError("Socket is closed")
        message = paramiko.Message()
        message.add_byte(paramiko.common.cMSG_CHANNEL_DATA)
        message.add_int(c.remote_chanid)
        message.add_string(bytes(view[:size]))
        return message, size

    deadline = time.monotonic() + timeout
    try:
        while view:
            view = view[_send_locked(c, transport, build, deadline, ready) :]
    except EOFError as exc:  # paramiko's socket write on a dead link
        raise OSError("connection closed") from exc


def close(chan: paramiko.Channel) -> None:
    """`chan.close()`, which sends CLOSE: on a link that just died paramiko's socket write raises a
    bare EOFError (click would call it "aborted"). The link is gone; the channel is closed anyway."""
    with contextlib.suppress(OSError, EOFError):
        chan.close()
