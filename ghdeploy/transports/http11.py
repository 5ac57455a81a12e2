"""A small HTTP/1.1 client for the service's own endpoints, over any connected stream.

The engine only ever GETs or POSTs small JSON documents to a port on the host's own localhost
(/health, /health/version, /worker/health, /worker/drain). A full client stack (httpx +
httpcore, which pulls in anyio and trio when installed) costs 100+ ms of imports on every
`verify` and `status`, and the standard library's http.client pulls in ssl and email (~25 ms).
h11 (the HTTP/1.1 state machine httpcore itself is built on) parses the wire format, chunked
bodies included, for a few ms of import. Each request opens its own stream (over SSH: one
`direct-tcpip` channel, one round trip) and closes it after the body, so there is no pool to
manage and no stale keep-alive connection to detect.

The stream comes from an opener, so the same client runs over an SSH channel (the SSH
transport) and over a loopback TCP socket (the local transport).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ghdeploy.transports.base import Closing

_READ_CHUNK = 65536


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
    """A connected byte stream; socket.socket and paramiko.Channel both are one."""

    def sendall(self, data: bytes) -> Any: ...

    def recv(self, size: int) -> bytes: ...

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


@dataclass(frozen=True)
class Request:
    method: str
    host: str
    port: int
    target: str  # path and query
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.target}"


# Answers a request without any network (the dry run's simulated host, tests).
Handler = Callable[[Request], Response]


class Client(Closing):
    """GET/POST to http://HOST:PORT/... through streams from `opener`. Not pooled; thread-safe.

    With `handler` instead of an opener, requests are answered by it (no stream at all).
    `on_request` callbacks see every request before it is sent (the recording transport).
    """

    def __init__(self, opener: Opener | None = None, timeout: float = 5.0, *, handler: Handler | None = None) -> None:
        if (opener is None) == (handler is None):
            raise ValueError("give an opener or a handler")
        self._opener = opener
        self._handler = handler
        self.timeout = timeout
        self.on_request: list[Callable[[Request], None]] = []

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
        from urllib.parse import urlsplit

        import h11

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
        request = Request(method, host, port, target, body or b"")
        for hook in self.on_request:
            hook(request)
        if self._handler is not None:
            return self._handler(request)
        assert self._opener is not None
        fields = [("Host", f"{host}:{port}"), ("Connection", "close"), *(headers or {}).items()]
        if body is not None or method == "POST":
            fields.append(("Content-Length", str(len(body or b""))))
        stream = self._opener(host, port, self.timeout)
        try:
            stream.settimeout(self.timeout)
            conn = h11.Connection(h11.CLIENT)
            data = conn.send(h11.Request(method=method, target=target, headers=fields))
            if body:
                data += conn.send(h11.Data(data=body))
            stream.sendall(data + conn.send(h11.EndOfMessage()))
            return _read_response(conn, stream)
        except TimeoutError as exc:
            raise ReadTimeout(f"{method} {url}: no answer within {self.timeout:g} s") from exc
        except (h11.ProtocolError, OSError, EOFError) as exc:
            raise ReadError(f"{method} {url}: {exc or type(exc).__name__}") from exc
        finally:
            stream.close()


def _read_response(conn: Any, stream: Stream) -> Response:
    import h11

    status = 0
    headers: dict[str, str] = {}
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            # b"" (the peer closed) tells h11 the body ends here, or that the reply was cut short.
            conn.receive_data(stream.recv(_READ_CHUNK))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if not status:
                raise h11.RemoteProtocolError("closed before a response")
            return Response(status, b"".join(chunks), headers)
