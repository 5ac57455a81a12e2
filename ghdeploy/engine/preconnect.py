"""Connect to the hosts in the background while the command is still getting ready.

A one-host read spends most of its life waiting: ~60 ms importing paramiko, then a TCP
connect, the key exchange, authentication, and ~40 ms more while sshd sets up the session
after authentication (the first channel waits for it). Meanwhile the main thread imports what
the command will show its results with (rich, the renderers, the HTTP client). Started as soon
as the config is valid, the connection is often ready by the time the command asks for it, so
the two costs overlap instead of adding up.

`start` is called by the CLI right after validation (never for bad input: nothing connects
before the input is known good); `take` is how `connect_all` collects a connection that was
started here. A connection nobody took is closed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ghdeploy.hosts import Host

if TYPE_CHECKING:
    from ghdeploy.transports.ssh import Connection, SSHSettings

# At most this many hosts are connected ahead; the rest connect when the command asks.
AHEAD_LIMIT = 32
# The first channel of a fresh connection waits for sshd's session setup after authentication;
# a keepalive with want-reply waits for the same thing, so asking it here takes that wait off
# the command's path. Bounded: a silent server must not hold the command.
PRIME_TIMEOUT = 5.0

_lock = threading.Lock()
_started: dict[tuple[str, SSHSettings], Future[Connection]] = {}


def start(hosts: list[Host], settings: SSHSettings) -> None:
    """Begin connecting to `hosts` (each in its own daemon thread); `take` collects them.

    Each thread opens its host's TCP connection at once (without an ssh config the address is
    the host as written), then waits for paramiko: sshd spends ~10 ms of its own CPU between
    accepting and sending its banner, which then overlaps the import instead of following it.
    paramiko is imported here, in the caller's thread: that import is CPU work on the
    connection's critical path, and done in a thread it would share the interpreter with the
    caller's own imports and finish later. The handshakes that follow are mostly waiting on the
    network, which is what the caller's work overlaps with.
    """
    if not hosts:
        return
    imported = threading.Event()
    early = settings.ssh_config is None  # with one, HostName/Port/ProxyJump may send it elsewhere
    with _lock:
        for host in hosts[:AHEAD_LIMIT]:
            key = (host.label, settings)
            if key in _started:
                continue
            future: Future[Connection] = Future()
            _started[key] = future
            threading.Thread(
                target=_connect,
                args=(host, settings, future, imported, early),
                name=f"preconnect {host.label}",
                daemon=True,
            ).start()
    try:
        from ghdeploy.transports.ssh.importing import import_paramiko

        import_paramiko(settings.ssh_config)
    finally:
        imported.set()
    # What `verify` and `status` read with next, the tunnel's HTTP (h11 alone is ~14 ms of
    # imports), is imported here while the handshakes wait on the network: after them it was on
    # the command's path. (`history` and `lock` do not need it; it costs them nothing waited for.)
    import h11  # noqa: F401

    import ghdeploy.transports.http11  # noqa: F401


def take(host: Host, settings: SSHSettings) -> Connection | None:
    """The connection started for `host` with these settings (waiting for it), or None if none was.

    Raises what connecting raised, exactly as `connect` would have.
    """
    with _lock:
        future = _started.pop((host.label, settings), None)
    return None if future is None else future.result()


def _connect(
    host: Host, settings: SSHSettings, future: Future[Connection], imported: threading.Event, early: bool
) -> None:
    sock: socket.socket | OSError | None = None
    if early:
        from ghdeploy.transports.tcp import tcp_connect

        try:
            sock = tcp_connect(host.hostname, host.port or 22, settings.connect_timeout)
        except OSError as exc:  # connect() reports it as its own (an unreachable host waits once)
            sock = exc
    imported.wait()
    from ghdeploy.transports.ssh import connect

    try:
        conn = connect(host, settings, sock)
    except BaseException as exc:  # handed to whoever takes it, as connect() would have raised it
        future.set_exception(exc)
        return
    conn.ping(PRIME_TIMEOUT)
    future.set_result(conn)


@atexit.register
def _close_untaken() -> None:
    with _lock:
        left = list(_started.values())
        _started.clear()
    for future in left:
        if future.done() and future.exception() is None:
            with contextlib.suppress(Exception):  # best effort at exit
                future.result().close()
