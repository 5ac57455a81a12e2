"""A small HTTP/1.1 client for the service's own endpoints, over any connected stream.

The engine only ever GETs or POSTs small JSON documents to a port on the host's own localhost
(/health, /health/version, /worker/health, /worker/drain). A full client stack (httpx +
httpcore, which pulls in anyio and trio when installed) costs 100+ ms of imports on every
`verify` and `status`; the standard library's http.client parses HTTP/1.1 (chunked bodies,
keep-alive framing) correctly and costs a fraction of that. Each request opens its own stream
(over SSH: one `direct-tcpip` channel, one round trip) and closes it after the body, so there
is no pool to manage and no stale keep-alive connection to detect.

The stream comes from an opener, so the same client runs over an SSH channel (the SSH
transport) and over a loopback TCP socket (the local transport).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol


class HTTPError(Exception):
    """Nothing usable answered: the port refused, the request timed out, or the reply was not HTTP."""


class ConnectError(HTTPError):
    """The stream to host:port could not be opened (nothing listens there, or https was asked)."""


class ConnectTimeout(ConnectError):
    pass


class ReadError(HTTPError):
    """The stream broke, or what came back is not an HTTP response."""


class ReadTimeout(ReadError):
    pass


class Stream(Protocol):
    """What http.client needs of a connected stream; socket.socket and paramiko.Channel have it."""

    def sendall(self, data: bytes) -> Any: ...

    def makefile(self, mode: str) -> Any: ...

    def settimeout(self, timeout: float | None) -> None: ...

    def close(self) -> None: ...


# (host, port, timeout) -> a connected stream; raises ConnectError / ConnectTimeout.
Opener = Callable[[str, int, float], Stream]


@dataclass(frozen=True)
class Response:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return jsonlib.loads(self.content)


class Client:
    """GET/POST to http://HOST:PORT/... through streams from `opener`. Not pooled; thread-safe."""

    def __init__(self, opener: Opener, timeout: float = 5.0) -> None:
        self._opener = opener
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between requests; kept so a client is used like any other."""

    def get(self, url: str) -> Response:
        return self.request("GET", url)

    def post(self, url: str, json: Any = None) -> Response:
        body = b"" if json is None else jsonlib.dumps(json).encode()
        headers = {} if json is None else {"Content-Type": "application/json"}
        return self.request("POST", url, body=body, headers=headers)

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ConnectError(
                f"{parts.scheme}:// is not supported here, only http:// to the host's own ports"
                " (through SSH the channel is already encrypted)"
            )
        host = parts.hostname or "localhost"
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ConnectError(f"bad port in {url!r}") from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        stream = self._opener(host, port, self.timeout)
        try:
            stream.settimeout(self.timeout)
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            # Already connected: http.client writes to and reads from it as it would a socket.
            conn.sock = _KeptOpen(stream)
            conn.request(method, target, body=body, headers={"Connection": "close", **(headers or {})})
            reply = conn.getresponse()
            content = reply.read()
            return Response(reply.status, content, {k.lower(): v for k, v in reply.getheaders()})
        except TimeoutError as exc:
            raise ReadTimeout(f"{method} {url}: no answer within {self.timeout:g} s") from exc
        except (http.client.HTTPException, OSError, EOFError, ValueError) as exc:
            raise ReadError(f"{method} {url}: {exc or type(exc).__name__}") from exc
        finally:
            stream.close()


class _KeptOpen:
    """The stream as http.client sees it, minus close().

    http.client closes its socket as soon as it has read the headers of a `Connection: close`
    reply and relies on the socket staying readable through the makefile() it handed to the
    response; an SSH channel closes at once, which would cut off the body. We close the stream
    ourselves once the body is read.
    """

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def sendall(self, data: bytes) -> Any:
        return self._stream.sendall(data)

    def makefile(self, mode: str) -> Any:
        return self._stream.makefile(mode)

    def settimeout(self, timeout: float | None) -> None:
        self._stream.settimeout(timeout)

    def close(self) -> None:
        pass
