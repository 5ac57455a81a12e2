"""ghdeploy.transports.http11: the small HTTP/1.1 client, against scripted streams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ghdeploy.transports import http11


class ScriptedStream:
    """A connected stream that answers whatever is sent with a canned reply."""

    def __init__(self, reply: bytes, fail: BaseException | None = None) -> None:
        self.reply = reply
        self.fail = fail
        self.sent = b""
        self.closed = False
        self.timeout: float | None = None

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        if self.fail is not None:
            raise self.fail
        # Small reads, as a channel hands out what has arrived; nothing once closed.
        data, self.reply = self.reply[:7], self.reply[7:]
        return b"" if self.closed else data

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def close(self) -> None:
        self.closed = True


def _client(stream: ScriptedStream, opened: list[tuple[str, int, float]] | None = None) -> http11.Client:
    def opener(host: str, port: int, timeout: float) -> http11.Stream:
        if opened is not None:
            opened.append((host, port, timeout))
        return stream

    return http11.Client(opener, timeout=2.5)


def test_get_sends_a_closing_http11_request_and_parses_a_json_reply() -> None:
    stream = ScriptedStream(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'
    )
    opened: list[tuple[str, int, float]] = []
    response = _client(stream, opened).get("http://localhost:3100/health?x=1")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert opened == [("localhost", 3100, 2.5)] and stream.timeout == 2.5
    head = stream.sent.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"GET /health?x=1 HTTP/1.1"
    assert b"Host: localhost:3100" in head and b"Connection: close" in head
    assert stream.closed


def test_the_body_of_a_connection_close_reply_is_read_before_the_stream_closes() -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 15\r\n\r\n" + b'{"status":"ok"}'
    assert _client(ScriptedStream(reply)).get("http://localhost:3100/health").json() == {"status": "ok"}


def test_chunked_body_is_reassembled() -> None:
    reply = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
    assert _client(ScriptedStream(reply)).get("http://localhost:3100/x").json() == {"a": 1}


def test_body_until_close_without_length() -> None:
    reply = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\ndown"
    response = _client(ScriptedStream(reply)).get("http://localhost:3100/health")
    assert response.status_code == 503 and response.text == "down"
    with pytest.raises(ValueError):
        response.json()


def test_post_json_body() -> None:
    stream = ScriptedStream(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
    response = _client(stream).post("http://localhost:3101/worker/drain", json={"reason": "deploy"})
    assert response.status_code == 202
    head, body = stream.sent.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /worker/drain HTTP/1.1") and b"Content-Type: application/json" in head
    assert json.loads(body) == {"reason": "deploy"}


def test_post_without_body_says_length_zero() -> None:
    stream = ScriptedStream(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    _client(stream).post("http://localhost:3101/worker/drain")
    assert b"Content-Length: 0" in stream.sent


def test_not_http_is_a_read_error_and_closes_the_stream() -> None:
    stream = ScriptedStream(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(http11.ReadError):
        _client(stream).get("http://localhost:22/")
    assert stream.closed


def test_empty_reply_is_a_read_error() -> None:
    with pytest.raises(http11.ReadError):
        _client(ScriptedStream(b"")).get("http://localhost:3100/health")


def test_timeout_is_a_read_timeout() -> None:
    stream = ScriptedStream(b"", fail=TimeoutError("timed out"))
    with pytest.raises(http11.ReadTimeout, match=r"within 2\.5 s"):
        _client(stream).get("http://localhost:3100/health")
    assert stream.closed


def test_https_and_bad_ports_are_refused_before_opening_anything() -> None:
    opened: list[tuple[str, int, float]] = []
    client = _client(ScriptedStream(b""), opened)
    with pytest.raises(http11.ConnectError, match="https"):
        client.get("https://localhost:3100/health")
    with pytest.raises(http11.ConnectError, match="bad port"):
        client.get("http://localhost:99999/health")
    assert opened == []


def test_every_error_is_an_http_error() -> None:
    for cls in (http11.ConnectError, http11.ConnectTimeout, http11.ReadError, http11.ReadTimeout):
        assert issubclass(cls, http11.HTTPError)


def test_a_tunnel_get_needs_no_http_client_stack() -> None:
    code = (
        "import sys\n"
        "from ghdeploy.transports.ssh import tunnel\n"
        "from ghdeploy.transports import http11\n"
        "class S:\n"
        "    def sendall(self, d): pass\n"
        "    r = b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}'\n"
        "    def recv(self, n):\n"
        "        d, self.r = self.r[:n], self.r[n:]\n"
        "        return d\n"
        "    def settimeout(self, t): pass\n"
        "    def close(self): pass\n"
        "assert http11.Client(lambda h, p, t: S()).get('http://localhost:1/').json() == {}\n"
        "heavy = [m for m in ('httpx', 'httpcore', 'anyio', 'trio', 'ssl', 'http.client') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""})
