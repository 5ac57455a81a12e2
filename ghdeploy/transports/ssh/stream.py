"""A command whose output is read as it comes (`docker logs --follow`), and a liveness check.

runner.run collects a command's whole output; a log stream may be gigabytes or never end, so
here stdout is handed out line by line and the channel's flow-control window is the only
buffer. Added for `ghdeploy logs`.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ghdeploy.transports.ssh import channel_io
from ghdeploy.transports.ssh.runner import lost, open_timeout

if TYPE_CHECKING:
    import paramiko

_READ_CHUNK = 65536


def start(transport: paramiko.Transport, label: str, connect_timeout: float, argv: list[str]) -> RemoteStream:
    """Start argv on the host (stdin closed at once) and return its running stream."""
    import paramiko

    command = shlex.join(argv)
    try:
        chan = transport.open_session(timeout=open_timeout(connect_timeout, None))
        if chan is None:  # only in the stubs' types; paramiko raises instead
            raise paramiko.SSHException("could not open a session channel")
        chan.exec_command(command)
        channel_io.send_eof(chan)  # not shutdown_write(): see channel_io
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise lost(label, exc, f"starting `{command}`") from exc
    return RemoteStream(chan, transport)


def ping(transport: paramiko.Transport, timeout: float) -> bool:
    """True when the host answers an SSH keepalive within `timeout` seconds.

    TCP alone notices a host that vanished (link down, instance gone) only after minutes of
    retransmissions; a keepalive with want-reply is answered (even if refused) by any live sshd.
    """
    if not transport.is_active():
        return False
    done = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):
            transport.global_request("keepalive@openssh.com", wait=True)
        done.set()

    # Daemon: paramiko's wait has no timeout of its own; the thread ends when the transport closes.
    threading.Thread(target=ask, daemon=True).start()
    return done.wait(timeout) and transport.is_active()


class RemoteStream:
    """A command running on a host, read as a stream of lines."""

    def __init__(self, chan: paramiko.Channel, transport: paramiko.Transport) -> None:
        self._chan = chan
        self._transport = transport
        self._stderr: list[bytes] = []
        # stderr is drained aside (only its tail kept) so a chatty stderr cannot stall stdout.
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    def _drain_stderr(self) -> None:
        try:
            while data := self._chan.recv_stderr(_READ_CHUNK):
                self._stderr.append(data)
                if len(self._stderr) > 4:
                    del self._stderr[0]
        except (OSError, EOFError):
            return

    def lines(self) -> Iterator[bytes]:
        """stdout, one line at a time (without the newline), until the command ends."""
        pending = b""
        while True:
            try:
                data = self._chan.recv(_READ_CHUNK)
            except (OSError, EOFError):
                data = b""
            if not data:
                break
            pending += data
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    @property
    def connection_lost(self) -> bool:
        """The stream ended because the SSH connection died, not because the command ended."""
        return not self._transport.is_active()

    def exit_status(self, timeout: float = 2.0) -> int | None:
        if not self._chan.status_event.wait(timeout):
            return None
        status = self._chan.exit_status
        return None if status == -1 else int(status)

    def stderr_tail(self) -> str:
        self._stderr_reader.join(0.5)
        return b"".join(self._stderr).decode("utf-8", "replace").strip()[-300:]

    def close(self) -> None:
        channel_io.close(self._chan)
