"""`verify`'s question to one host: which commit does its /health/version report?

Apart from status.py so that `verify` imports nothing of the host records and containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy import hostdata
from ghdeploy.errors import GhdeployError
from ghdeploy.waiting import get_json

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


@dataclass
class VerifyRow:
    host: str
    expected: str
    running: str | None = None
    image_tag: str | None = None
    build_time: str | None = None
    error: str | None = None
    expected_from: str | None = None  # "--expect", or "HEAD of /path/to/checkout"
    note: str | None = None  # e.g. the checkout has no Dockerfile: probably not the app's

    @property
    def ok(self) -> bool:
        return self.error is None and matches(self.expected, self.running)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "expected": self.expected,
            "running": self.running,
            "image_tag": self.image_tag,
            "build_time": self.build_time,
            "error": self.error,
        }


def verify_host(conn: Remote, api_port: int, expected: str) -> VerifyRow:
    row = VerifyRow(host=conn.host.label, expected=expected)
    try:
        with conn.http_client(timeout=5.0) as http:
            code, body = get_json(http, f"http://localhost:{api_port}/health/version")
    except GhdeployError as exc:
        row.error = str(exc)
        return row
    if code is None:
        row.error = f"nothing answers on port {api_port}"
    elif code != 200 or not isinstance(body, dict):
        row.error = f"/health/version answered HTTP {code}"
    else:
        row.running = hostdata.text(body.get("commit_sha"))
        row.image_tag = hostdata.text(body.get("image_tag"))
        row.build_time = hostdata.text(body.get("build_time"))
        if not row.running:
            row.error = "/health/version has no commit_sha"
    return row


def matches(expected: str, running: str | None) -> bool:
    """A short SHA given with --expect matches the full one the service reports."""
    return running is not None and len(expected) >= 7 and running.startswith(expected)
