"""HTTP to a port on the host's own localhost, through paramiko `direct-tcpip` channels.

Neither curl on the host nor a local listening port is needed: the channel's destination is
resolved and connected by the remote sshd, so "localhost" is the host's own loopback. Opening
a channel is one round trip inside the existing connection (no TCP or SSH handshake), cheap
enough to poll /health every 100 ms. The HTTP itself is ghdeploy.transports.http11.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ghdeploy.transports.http11 import Client, ConnectError, ConnectTimeout, Opener, Stream
from ghdeploy.transports.ssh import channel_io

if TYPE_CHECKING:
    import paramiko


def channel_opener(transport: paramiko.Transport, label: str) -> Opener:
    """Streams that are direct-tcpip channels from the host itself to host:port."""

    def open_channel(host: str, port: int, timeout: float) -> Stream:
        def opening() -> paramiko.Channel:
            return transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)

        # A refusal (code 2 'Connect failed'): nothing listens on host:port, as seen remotely.
        return _opened(opening, label, f"{host}:{port}", "a tunnel")

    return open_channel


def socket_opener(transport: paramiko.Transport, label: str, socket_path: str) -> Opener:
    """Streams that are channels to a unix socket on the host (see streamlocal): whatever host
    and port a URL names, each request reaches `socket_path`."""

    def open_channel(host: str, port: int, timeout: float) -> Stream:
        from ghdeploy.transports.ssh import streamlocal

        return _opened(
            lambda: streamlocal.open_channel(transport, socket_path, timeout), label, socket_path, "a stream"
        )

    return open_channel


def _opened(opening: Callable[[], paramiko.Channel], label: str, where: str, what: str) -> Stream:
    """The channel `opening` opens, as a Stream; paramiko's failures as http11's ConnectError."""
    import paramiko

    try:
        chan = opening()
    except paramiko.ChannelException as exc:  # the server refused it
        raise ConnectError(f"{label}: cannot connect to {where} on the host ({exc.text})") from exc
    except paramiko.SSHException as exc:
        if "Timeout" in str(exc):
            raise ConnectTimeout(f"{label}: opening {what} to {where} timed out") from exc
        raise ConnectError(f"{label}: SSH connection unusable for {what} to {where} ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ConnectError(f"{label}: SSH connection lost opening {what} to {where} ({exc})") from exc
    return _OrderedStream(chan)


class _OrderedStream:
    """The channel as an http11 Stream, its request sent so that an app that closes before
    reading it (restarting) cannot make sshd drop the whole connection (see channel_io)."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self._chan = chan

    def sendall(self, data: bytes) -> None:
        channel_io.send_all(self._chan, data)

    def recv(self, size: int) -> bytes:
        return self._chan.recv(size)

    def settimeout(self, timeout: float | None) -> None:
        self._chan.settimeout(timeout)

    def close(self) -> None:
        channel_io.close(self._chan)


def http_client(transport: paramiko.Transport, label: str, timeout: float = 5.0) -> Client:
    """`client.get("http://localhost:3100/health")` reaches the host's own localhost:3100.

    A closed remote port raises http11.ConnectError; https is refused (the channel is encrypted).
    """
    return Client(channel_opener(transport, label), timeout)
