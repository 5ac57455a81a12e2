"""HTTP to a port on the host's own localhost, through paramiko `direct-tcpip` channels.

Neither curl on the host nor a local listening port is needed: the channel's destination is
resolved and connected by the remote sshd.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    import httpcore
    import httpx
    import paramiko


def http_client(transport: paramiko.Transport, label: str, timeout: float = 5.0) -> httpx.Client:
    """An httpx.Client whose connections are direct-tcpip channels from the host itself."""
    import httpcore
    import httpx

    backend = _backend_class()(transport, label)
    pool = httpcore.ConnectionPool(
        network_backend=backend,
        max_connections=20,
        max_keepalive_connections=10,
        keepalive_expiry=5.0,
        http1=True,
        http2=False,
        retries=0,
    )
    # verify=False only spares building a CA-bundle SSL context that the swapped-in pool
    # never uses: https is refused by the tunnel (the SSH channel is already encrypted).
    http_transport = httpx.HTTPTransport(verify=False, trust_env=False)
    http_transport._pool.close()
    # httpx has no public hook for a network backend; HTTPTransport delegates everything
    # (requests, exception mapping, close) to `_pool`, so swapping it is the smallest
    # seam. If httpx ever renames it, this fails loudly in the tests, not silently.
    http_transport._pool = pool
    return httpx.Client(transport=http_transport, timeout=timeout, trust_env=False)


@functools.cache
def _backend_class() -> Callable[[paramiko.Transport, str], httpcore.NetworkBackend]:
    # Built on first use so httpcore stays out of module import (subclassing its bases needs
    # the import).
    import httpcore
    import paramiko

    class ChannelStream(httpcore.NetworkStream):
        def __init__(self, chan: paramiko.Channel, address: tuple[str, int]) -> None:
            self._chan = chan
            self._address = address

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            self._chan.settimeout(timeout)
            try:
                return self._chan.recv(max_bytes)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
            except (OSError, EOFError) as exc:
                raise httpcore.ReadError(str(exc)) from exc

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if not buffer:
                return
            self._chan.settimeout(timeout)
            try:
                self._chan.sendall(buffer)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
            except (OSError, EOFError) as exc:
                raise httpcore.WriteError(str(exc)) from exc

        def close(self) -> None:
            self._chan.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            raise httpcore.ConnectError(
                "https through the SSH tunnel is not supported; use http:// (the SSH channel is already encrypted)"
            )

        def get_extra_info(self, info: str) -> Any:
            if info == "is_readable":
                # httpcore asks this of idle keep-alive connections: readable means the
                # server closed (or sent junk), so the connection must not be reused.
                chan = self._chan
                return chan.closed or chan.eof_received or chan.recv_ready()
            if info == "server_addr":
                return self._address
            return None

    class TunnelBackend(httpcore.NetworkBackend):
        def __init__(self, transport: paramiko.Transport, label: str) -> None:
            self._transport = transport
            self._label = label

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            # The channel's destination is resolved and connected BY THE REMOTE sshd, so
            # "localhost" here is the host's own loopback. One round trip, no new TCP/SSH
            # handshake: cheap enough to poll /health every 100 ms.
            try:
                chan = self._transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                # Code 2 'Connect failed': nothing listens on host:port (as seen remotely).
                raise httpcore.ConnectError(
                    f"{self._label}: cannot connect to {host}:{port} on the host ({exc.text})"
                ) from exc
            except paramiko.SSHException as exc:
                if "Timeout" in str(exc):
                    raise httpcore.ConnectTimeout(
                        f"{self._label}: opening a tunnel to {host}:{port} timed out"
                    ) from exc
                raise httpcore.ConnectError(
                    f"{self._label}: SSH connection unusable for a tunnel to {host}:{port} ({exc})"
                ) from exc
            except (OSError, EOFError) as exc:
                raise httpcore.ConnectError(
                    f"{self._label}: SSH connection lost opening a tunnel to {host}:{port} ({exc})"
                ) from exc
            return ChannelStream(chan, (host, port))

        def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            raise httpcore.ConnectError("unix sockets are not tunnelled")

        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    return TunnelBackend
