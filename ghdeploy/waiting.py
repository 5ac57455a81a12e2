"""Wait loops and the service's HTTP endpoints, with time injected.

The loops poll fast at first and back off, so a state change is seen within a fraction of a
second, without hammering a service that takes a while. `sleep`, `clock` and `cancel` are
parameters, so unit tests run them without really waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ghdeploy.transports.http11 import Client

FIRST_INTERVAL = 0.05
MAX_INTERVAL = 1.0
# /health is polled through an already open SSH connection: a request costs about a millisecond
# there and back, so polling every 100 ms for a minute is cheap, and a healthy service is seen
# within ~100 ms instead of up to a second later.
HEALTH_INTERVAL = 0.1
BACKOFF = 1.5


@dataclass
class Clock:
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.monotonic


class CancelToken(threading.Event):
    """Set when the operator interrupts (SIGINT/SIGTERM).

    Until `arm()` is called nothing on a host has been changed, and an interrupt may stop the
    command at once. Once armed (locks held, hosts about to change), an interrupt only sets the
    token, and the work stops at its next safe point, rolling back a host caught mid-switch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def arm(self) -> None:
        self.armed = True


class Cancelled(Exception):
    """The operator interrupted (SIGINT/SIGTERM) while we waited."""


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    clock: Clock,
    cancel: threading.Event | None = None,
    first: float = FIRST_INTERVAL,
    max_interval: float = MAX_INTERVAL,
) -> bool:
    """Call check() until it is true (-> True) or `timeout` seconds pass (-> False)."""
    deadline = clock.now() + timeout
    interval = first
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if check():
            return True
        remaining = deadline - clock.now()
        if remaining <= 0:
            return False
        clock.sleep(min(interval, remaining))
        interval = min(interval * BACKOFF, max_interval)


def health_ok(client: Client, port: int) -> bool:
    from ghdeploy.transports.http11 import HTTPError

    try:
        return client.get(f"http://localhost:{port}/health").status_code == 200
    except HTTPError:
        return False


def get_json(client: Client, url: str) -> tuple[int | None, Any]:
    """(status, parsed body or None); status None when nothing answered."""
    from ghdeploy.transports.http11 import HTTPError

    try:
        response = client.get(url)
    except HTTPError:
        return None, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


@dataclass
class DrainResult:
    outcome: str  # "idle" (safe at once) | "drained" | "no-endpoint" | "timeout"
    seconds: float
    detail: str = ""


def worker_health(client: Client, port: int) -> dict[str, Any] | None:
    status, body = get_json(client, f"http://localhost:{port}/worker/health")
    if status != 200 or not isinstance(body, dict) or "deploy_safe" not in body:
        return None
    return body


def drain_worker(
    client: Client,
    port: int,
    timeout: float,
    clock: Clock,
    cancel: threading.Event | None = None,
) -> DrainResult:
    """The app's graceful drain: go if deploy_safe, else POST /worker/drain and poll.

    A worker with no status endpoint (an older image) or one that does not drain in time is
    left to the SIGTERM fallback (`docker compose stop -t STOP_TIMEOUT`), which the caller runs
    in every case.
    """
    from ghdeploy.transports.http11 import HTTPError

    start = clock.now()
    health = worker_health(client, port)
    if health is None:
        return DrainResult("no-endpoint", 0.0, "no /worker/health answer")
    if health.get("deploy_safe") is True:
        return DrainResult("idle", clock.now() - start)
    try:
        response = client.post(f"http://localhost:{port}/worker/drain")
    except HTTPError as exc:
        return DrainResult("no-endpoint", clock.now() - start, f"POST /worker/drain failed: {exc}")
    if response.status_code >= 400:
        return DrainResult("no-endpoint", clock.now() - start, f"POST /worker/drain answered {response.status_code}")

    def safe() -> bool:
        current = worker_health(client, port)
        return current is not None and current.get("deploy_safe") is True

    # The worker finishes a job in seconds or minutes: poll a little slower than health.
    drained = wait_for(safe, timeout, clock, cancel, first=0.1, max_interval=0.5)
    return DrainResult("drained" if drained else "timeout", clock.now() - start)
