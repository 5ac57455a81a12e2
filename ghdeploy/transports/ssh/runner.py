"""Run one argv on a host over an SSH session channel and collect its exit status and output.

Commands are argv lists quoted with `shlex.join`; secrets travel on stdin, never in argv.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import SSHError
from ghdeploy.transports.base import CommandResult
from ghdeploy.transports.ssh import channel_io

if TYPE_CHECKING:
    import paramiko

_READ_CHUNK = 65536


def lost(label: str, exc: BaseException, what: str) -> SSHError:
    return SSHError(
        label, f"SSH connection lost while {what}: {exc}", "check that the host is up and reachable, then re-run"
    )


def open_timeout(connect_timeout: float, deadline: float | None) -> float:
    # Opening a channel is one round trip: if it takes longer than a connect may, the
    # connection is as good as dead.
    limit = connect_timeout
    if deadline is not None:
        limit = min(limit, deadline - time.monotonic())
    return max(0.1, limit)


def run(
    transport: paramiko.Transport,
    label: str,
    connect_timeout: float,
    argv: list[str],
    *,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run argv on the host. stdout/stderr are drained concurrently (no deadlock on big
    output); stdin is written then closed, so secrets never appear in argv or `ps`."""
    import paramiko

    command = shlex.join(argv)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        chan = transport.open_session(timeout=open_timeout(connect_timeout, deadline))
        if chan is None:  # only in the stubs' types; paramiko raises instead
            raise paramiko.SSHException("could not open a session channel")
        chan.exec_command(command)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise lost(label, exc, f"starting `{command}`") from exc
    try:
        out: list[bytes] = []
        err: list[bytes] = []
        workers = [
            _thread(_drain, chan.recv, out),
            _thread(_drain, chan.recv_stderr, err),
        ]
        if stdin:
            workers.append(_thread(_feed, chan, stdin))
        else:
            # EOF right away: a command that reads stdin must not wait for us forever. (Not
            # chan.shutdown_write(): a command that already ended would make sshd drop the
            # whole connection, see channel_io.)
            channel_io.send_eof(chan)
        for worker in workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                raise SSHError(
                    label,
                    f"`{command}` did not finish within {timeout:g} s",
                    "the command may still be running on the host; check it there, or raise the timeout",
                )
        # Both streams hit EOF; the exit status arrives just before the channel closes.
        if not chan.status_event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()) + 1.0):
            raise SSHError(
                label,
                f"`{command}` closed its output but reported no exit status",
                "re-run; if it persists, check sshd on the host",
            )
        rc = chan.exit_status
        if rc == -1 and not transport.is_active():
            # The channel closed because the connection died, not because the command
            # ended (a command killed by a signal also reports -1, but over a live link).
            raise lost(label, EOFError("connection closed"), f"running `{command}`")
    finally:
        # Closing also wakes any reader still blocked (on timeout) so its thread ends.
        channel_io.close(chan)
    return CommandResult(
        rc=rc,
        stdout=b"".join(out).decode("utf-8", "replace"),
        stderr=b"".join(err).decode("utf-8", "replace"),
    )


def _thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    # Daemon: a reader stuck on a dead connection must not keep the CLI from exiting.
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _drain(read: Callable[[int], bytes], sink: list[bytes]) -> None:
    try:
        while data := read(_READ_CHUNK):
            sink.append(data)
    except (OSError, EOFError):
        # The channel was closed under us (timeout or lost connection); the caller reports.
        return


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        channel_io.send_all(chan, data)
        channel_io.send_eof(chan)
    except (OSError, EOFError):
        # The command exited without reading all of stdin; its rc and stderr tell why.
        return
