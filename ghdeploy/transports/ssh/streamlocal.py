"""A channel from the host's sshd to a unix socket on the host (OpenSSH's `direct-streamlocal`).

Why: `status` and every deploy read what runs on the host. Through the docker CLI that is a
shell, `docker ps`, awk, `docker inspect` and `docker image inspect` on the host, one after the
other: 60-100 ms of the host's CPU and wall time per read, most of it the Go CLI starting. The
same JSON comes straight from the Docker Engine API when the SSH connection carries a stream to
the engine's socket, which is what `ssh -L local.sock:/var/run/docker.sock` does and what the
docker CLI's own `ssh://` hosts avoid only by running `docker system dial-stdio` remotely.

paramiko opens only direct-tcpip, forwarded-tcpip and x11 channels itself; `direct-streamlocal@
openssh.com` differs only in what follows the open request (the socket path, a reserved string
and a reserved number: OpenSSH's PROTOCOL, section 2.4). `open_channel` below is paramiko's own
Transport.open_channel with those fields, so it relies on Transport internals (stable since
paramiko 2.x). When they are missing, `supported` says False and callers use the docker CLI.

The remote sshd connects to the socket as the SSH user: exactly the access `docker` commands
over SSH have, nothing more. A server with `AllowStreamLocalForwarding no` refuses the channel
(ChannelException), and so does a socket the user may not open.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

KIND = "direct-streamlocal@openssh.com"

_TRANSPORT_INTERNALS = (
    "lock",
    "_sanitize_window_size",
    "_sanitize_packet_size",
    "_next_channel",
    "_channels",
    "channel_events",
    "channels_seen",
    "_send_user_message",
    "get_exception",
    "active",
)


def supported(transport: paramiko.Transport) -> bool:
    """Does this paramiko have what open_channel uses?"""
    import paramiko

    return all(hasattr(transport, name) for name in _TRANSPORT_INTERNALS) and all(
        hasattr(paramiko.Channel, name) for name in ("_set_transport", "_set_window")
    )


def open_channel(transport: paramiko.Transport, socket_path: str, timeout: float) -> paramiko.Channel:
    """A channel connected to `socket_path` on the host. Raises paramiko.ChannelException when
    the server refuses it, paramiko.SSHException on a timeout or a dead connection."""
    import paramiko
    from paramiko.common import cMSG_CHANNEL_OPEN

    t: Any = transport
    if not t.active:
        raise paramiko.SSHException("SSH session not active")
    with t.lock:
        window_size = t._sanitize_window_size(None)
        max_packet_size = t._sanitize_packet_size(None)
        chanid = t._next_channel()
        m = paramiko.Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string(KIND)
        m.add_int(chanid)
        m.add_int(window_size)
        m.add_int(max_packet_size)
        m.add_string(socket_path)
        m.add_string("")  # reserved
        m.add_int(0)  # reserved
        chan: Any = paramiko.Channel(chanid)
        t._channels.put(chanid, chan)
        t.channel_events[chanid] = event = threading.Event()
        t.channels_seen[chanid] = True
        chan._set_transport(t)
        chan._set_window(window_size, max_packet_size)
    t._send_user_message(m)
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not t.active:
            raise t.get_exception() or paramiko.SSHException("Unable to open channel.")
        if time.monotonic() > deadline:
            raise paramiko.SSHException("Timeout opening channel.")
    opened: paramiko.Channel | None = t._channels.get(chanid)
    if opened is not None:
        return opened
    # The server's OPEN_FAILURE: paramiko saved it as a ChannelException (code, reason).
    raise t.get_exception() or paramiko.SSHException("Unable to open channel.")
