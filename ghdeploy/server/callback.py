"""Reporting back: a signed `ghosthands.deploy_finished` POST to DEPLOY_CALLBACK_URL.

Sent from its own threads so a slow or dead callback endpoint never holds up the next deploy;
retried with backoff; the outcome is recorded with the deploy and is never fatal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ghdeploy.server.auth import SIGNATURE_HEADER, sign
from ghdeploy.server.payload import FINISHED_EVENT, iso, now_utc

log = logging.getLogger("ghdeploy.serve")

ATTEMPTS = 4
BACKOFF = 1.0  # seconds before the 2nd attempt; doubles each time (1, 2, 4)
TIMEOUT = 10.0


def body_for(record: dict[str, Any]) -> bytes:
    payload = {
        "event": FINISHED_EVENT,
        "id": record["id"],
        "status": record["status"],
        "image_tag": record["image_tag"],
        "commit_sha": record["commit_sha"],
        "environment": record["environment"],
        "hosts": record.get("hosts") or [],
        "run_url": record["run_url"],
        "error": record.get("error"),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


def send(
    url: str,
    secret: str,
    body: bytes,
    *,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    timeout: float = TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    post: Callable[[str, bytes, dict[str, str], float], int] | None = None,
) -> dict[str, Any]:
    """POST `body` signed; retry a failure that may pass. Returns what to record (never the URL)."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        "X-GH-Event": "deploy_finished",
    }
    post = post or _post
    error = None
    status: int | None = None
    for attempt in range(1, attempts + 1):
        try:
            status = post(url, body, headers, timeout)
            error = None if 200 <= status < 300 else f"answered {status}"
        except OSError as exc:  # httpx.TransportError is translated to OSError in _post
            status, error = None, str(exc) or type(exc).__name__
        if error is None or (status is not None and not _retryable(status)):
            break
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return {
        "delivered": error is None,
        "attempts": attempt,
        "status_code": status,
        "error": error,
        "at": iso(now_utc()),
    }


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    import ssl

    import httpx

    try:
        # the OpenSSL default paths honour SSL_CERT_FILE: a private CA works as for the registry
        with httpx.Client(timeout=timeout, verify=ssl.create_default_context(), follow_redirects=False) as client:
            return client.post(url, content=body, headers=headers).status_code
    except httpx.TransportError as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None


class CallbackSender:
    """Sends callbacks in the background and records each outcome with `record_outcome`."""

    def __init__(self, url: str, secret: str, record_outcome: Callable[[int, dict[str, Any]], None]) -> None:
        self.url = url
        self.secret = secret
        self.record_outcome = record_outcome
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ghdeploy-callback")

    def submit(self, record: dict[str, Any]) -> None:
        self._pool.submit(self._deliver, record)

    def _deliver(self, record: dict[str, Any]) -> None:
        outcome = send(self.url, self.secret, body_for(record))
        deploy_id = int(record["id"])
        if outcome["delivered"]:
            log.info("deploy #%s: callback delivered (%s)", deploy_id, outcome["status_code"])
        else:
            log.warning(
                "deploy #%s: callback failed after %s attempt(s): %s", deploy_id, outcome["attempts"], outcome["error"]
            )
        try:
            self.record_outcome(deploy_id, outcome)
        except Exception as exc:
            log.warning("deploy #%s: could not record the callback outcome: %s", deploy_id, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
