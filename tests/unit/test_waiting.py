"""ghdeploy.waiting: wait loops on a fake clock, drain and health against an in-process HTTP handler."""

from __future__ import annotations

import itertools
import json as jsonlib
import threading
from collections.abc import Callable

import pytest

from ghdeploy.transports.http11 import Client, ConnectError, HTTPError, ReadError, ReadTimeout, Request, Response
from ghdeploy.waiting import (
    Cancelled,
    Clock,
    drain_worker,
    get_json,
    health_ok,
    wait_for,
    worker_health,
)


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.t = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, "negative sleep"
        self.sleeps.append(seconds)
        self.t += seconds
        if self.on_sleep:
            self.on_sleep()

    @property
    def elapsed(self) -> float:
        return self.t - self.start

    def clock(self) -> Clock:
        return Clock(sleep=self.sleep, now=self.now)


# --- wait_for -------------------------------------------------------------------------------


def test_returns_true_at_once_without_sleeping() -> None:
    fake = FakeClock()
    assert wait_for(lambda: True, 60, fake.clock()) is True
    assert fake.sleeps == []


def test_returns_true_as_soon_as_the_check_passes() -> None:
    fake = FakeClock()
    calls: list[float] = []

    def check() -> bool:
        calls.append(fake.t)
        return len(calls) == 4

    assert wait_for(check, 60, fake.clock()) is True
    assert len(calls) == 4
    assert len(fake.sleeps) == 3  # no sleep after the passing check


def test_returns_false_at_timeout() -> None:
    fake = FakeClock()
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        return False

    assert wait_for(check, 10, fake.clock()) is False
    assert fake.elapsed == pytest.approx(10, abs=1e-6)  # sleeps are clipped to the deadline
    assert calls >= 10  # it kept polling the whole time
    assert calls == len(fake.sleeps) + 1  # and checked once more at the deadline


def test_zero_timeout_checks_once() -> None:
    fake = FakeClock()
    assert wait_for(lambda: False, 0, fake.clock()) is False
    assert fake.sleeps == []


def test_intervals_start_short_and_back_off_to_one_second() -> None:
    fake = FakeClock()
    wait_for(lambda: False, 30, fake.clock())
    sleeps = fake.sleeps[:-1]  # the last one is clipped to the deadline
    assert sleeps[0] <= 0.1
    assert sleeps[1] <= 0.1  # still quick on the second poll
    assert all(b >= a for a, b in itertools.pairwise(sleeps))  # never speeds up again
    assert max(fake.sleeps) <= 1.0
    assert sleeps[-1] == pytest.approx(1.0)  # reaches the cap
    # the first second holds several polls
    polls_in_first_second = sum(1 for i in range(len(fake.sleeps)) if sum(fake.sleeps[: i + 1]) <= 1.0)
    assert polls_in_first_second >= 4


def test_a_state_change_is_seen_within_a_fraction_of_a_second() -> None:
    for becomes_true_at in (0.01, 0.2, 0.3, 0.7, 1.5):
        fake = FakeClock()

        def reached(t: float = becomes_true_at, f: FakeClock = fake) -> bool:
            return f.elapsed >= t

        assert wait_for(reached, 60, fake.clock()) is True
        assert fake.elapsed - becomes_true_at < 0.5, (becomes_true_at, fake.elapsed)
        if becomes_true_at <= 0.3:
            assert fake.elapsed - becomes_true_at < 0.2, (becomes_true_at, fake.elapsed)


def test_cancel_already_set_raises_before_checking() -> None:
    fake = FakeClock()
    cancel = threading.Event()
    cancel.set()
    checked: list[int] = []

    def check() -> bool:
        checked.append(1)
        return False

    with pytest.raises(Cancelled):
        wait_for(check, 60, fake.clock(), cancel)
    assert checked == []


def test_cancel_while_waiting_raises_promptly() -> None:
    fake = FakeClock()
    cancel = threading.Event()
    fake.on_sleep = lambda: cancel.set() if fake.elapsed >= 2 else None
    with pytest.raises(Cancelled):
        wait_for(lambda: False, 60, fake.clock(), cancel)
    assert fake.elapsed < 3.5  # stopped at the next poll, long before the timeout


def test_custom_intervals() -> None:
    fake = FakeClock()
    wait_for(lambda: False, 10, fake.clock(), first=0.2, max_interval=0.3)
    assert fake.sleeps[0] == pytest.approx(0.2)
    assert max(fake.sleeps) <= 0.3 + 1e-9


# --- the fake worker ------------------------------------------------------------------------


class FakeWorker:
    """The GhostHands status endpoints on a fake clock.

    /health answers `health_status`; /worker/health answers deploy_safe once `drains_after`
    seconds have passed since POST /worker/drain (None: never drains).
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        safe_at_once: bool = False,
        drains_after: float | None = 2.0,
        health_status: int = 200,
    ) -> None:
        self.clock = clock
        self.safe_at_once = safe_at_once
        self.drains_after = drains_after
        self.health_status = health_status
        self.drain_posted_at: float | None = None
        self.requests: list[tuple[str, str]] = []

    def safe(self) -> bool:
        if self.safe_at_once:
            return True
        if self.drain_posted_at is None or self.drains_after is None:
            return False
        return self.clock.t - self.drain_posted_at >= self.drains_after

    def handler(self, request: Request) -> Response:
        self.requests.append((request.method, f"{request.host}:{request.port}{request.path}"))
        path = request.path
        if request.method == "GET" and path == "/health":
            return reply(self.health_status, json={"status": "ok"})
        if request.method == "GET" and path == "/worker/health":
            safe = self.safe()
            return reply(
                200,
                json={"status": "idle" if safe else "working", "active_jobs": 0 if safe else 1, "deploy_safe": safe},
            )
        if request.method == "POST" and path == "/worker/drain":
            if self.drain_posted_at is None:
                self.drain_posted_at = self.clock.t
            return reply(200, json={"status": "draining"})
        return reply(404)

    def client(self) -> Client:
        return Client(handler=self.handler)

    @property
    def posts(self) -> list[str]:
        return [path for method, path in self.requests if method == "POST"]

    @property
    def polls(self) -> int:
        return sum(1 for method, path in self.requests if method == "GET" and path.endswith("/worker/health"))


def _client(handler: Callable[[Request], Response]) -> Client:
    return Client(handler=handler)


def reply(status: int, *, json: object = None, text: str = "") -> Response:
    """What the service answers: a JSON body, some text, or nothing."""
    body = text.encode() if json is None else jsonlib.dumps(json).encode()
    return Response(status, body)


def _refuse(request: Request) -> Response:
    raise ConnectError("Connection refused")


# --- drain_worker ---------------------------------------------------------------------------


def test_drain_idle_worker_goes_at_once_without_post() -> None:
    fake = FakeClock()
    worker = FakeWorker(fake, safe_at_once=True)
    with worker.client() as client:
        result = drain_worker(client, 3101, 60, fake.clock())
    assert result.outcome == "idle"
    assert worker.posts == []
    assert worker.requests == [("GET", "localhost:3101/worker/health")]
    assert fake.sleeps == []
    assert result.outcome in ("idle", "drained")  # no SIGTERM fallback needed


def test_drain_busy_worker_posts_drain_then_polls_until_safe() -> None:
    fake = FakeClock()
    worker = FakeWorker(fake, drains_after=2.0)
    with worker.client() as client:
        result = drain_worker(client, 3101, 60, fake.clock())
    assert result.outcome == "drained"
    assert worker.posts == ["localhost:3101/worker/drain"]
    assert worker.requests[:2] == [("GET", "localhost:3101/worker/health"), ("POST", "localhost:3101/worker/drain")]
    assert worker.polls >= 3  # the first look, then polls until deploy_safe
    # seen soon after it became safe, not at the timeout
    assert 2.0 <= result.seconds < 2.6
    assert result.seconds == pytest.approx(fake.elapsed)
    assert max(fake.sleeps) <= 1.0
    assert result.outcome in ("idle", "drained")  # no SIGTERM fallback needed


def test_drain_that_never_finishes_times_out() -> None:
    fake = FakeClock()
    worker = FakeWorker(fake, drains_after=None)
    with worker.client() as client:
        result = drain_worker(client, 3101, 15, fake.clock())
    assert result.outcome == "timeout"
    assert result.seconds == pytest.approx(15, abs=0.01)
    assert fake.elapsed == pytest.approx(15, abs=0.01)
    assert worker.posts == ["localhost:3101/worker/drain"]  # posted once, not on every poll
    assert worker.polls > 10
    assert result.outcome in ("no-endpoint", "timeout")  # left to the SIGTERM fallback


def test_drain_404_means_no_endpoint() -> None:
    fake = FakeClock()
    requests: list[str] = []

    def handler(request: Request) -> Response:
        requests.append(f"{request.method} {request.path}")
        return reply(404, text="Not Found")

    with _client(handler) as client:
        result = drain_worker(client, 3101, 60, fake.clock())
    assert result.outcome == "no-endpoint"
    assert requests == ["GET /worker/health"]
    assert fake.sleeps == []
    assert result.outcome in ("no-endpoint", "timeout")  # left to the SIGTERM fallback


def test_drain_connection_error_means_no_endpoint() -> None:
    fake = FakeClock()
    with _client(_refuse) as client:
        result = drain_worker(client, 3101, 60, fake.clock())
    assert result.outcome == "no-endpoint"
    assert fake.elapsed == 0
    assert result.outcome in ("no-endpoint", "timeout")  # left to the SIGTERM fallback


@pytest.mark.parametrize(
    "response",
    [
        reply(200, text="not json"),
        reply(200, json={"status": "working"}),  # no deploy_safe
        reply(200, json=["deploy_safe"]),
        reply(503, json={"deploy_safe": True}),
    ],
)
def test_drain_unusable_health_answer_means_no_endpoint(response: Response) -> None:
    fake = FakeClock()
    with _client(lambda request: response) as client:
        assert drain_worker(client, 3101, 60, fake.clock()).outcome == "no-endpoint"


@pytest.mark.parametrize("post_status", [404, 405, 500])
def test_drain_post_refused_means_no_endpoint(post_status: int) -> None:
    fake = FakeClock()

    def handler(request: Request) -> Response:
        if request.method == "POST":
            return reply(post_status)
        return reply(200, json={"deploy_safe": False, "active_jobs": 1})

    with _client(handler) as client:
        result = drain_worker(client, 3101, 60, fake.clock())
    assert result.outcome == "no-endpoint"
    assert str(post_status) in result.detail
    assert fake.elapsed == 0  # did not wait for a drain that was never started


def test_drain_post_connection_error_means_no_endpoint() -> None:
    fake = FakeClock()

    def handler(request: Request) -> Response:
        if request.method == "POST":
            raise ConnectError("reset")
        return reply(200, json={"deploy_safe": False})

    with _client(handler) as client:
        assert drain_worker(client, 3101, 60, fake.clock()).outcome == "no-endpoint"


def test_drain_worker_that_goes_away_while_draining_times_out() -> None:
    """A worker that stops answering mid-drain is not 'drained'."""
    fake = FakeClock()
    gets = 0

    def handler(request: Request) -> Response:
        nonlocal gets
        if request.method == "POST":
            return reply(200)
        gets += 1
        if gets == 1:
            return reply(200, json={"deploy_safe": False})
        raise ConnectError("gone")

    with _client(handler) as client:
        result = drain_worker(client, 3101, 5, fake.clock())
    assert result.outcome == "timeout"


def test_drain_cancelled_while_polling() -> None:
    fake = FakeClock()
    cancel = threading.Event()
    fake.on_sleep = lambda: cancel.set() if fake.elapsed >= 1 else None
    worker = FakeWorker(fake, drains_after=None)
    with worker.client() as client, pytest.raises(Cancelled):
        drain_worker(client, 3101, 60, fake.clock(), cancel)
    assert fake.elapsed < 2


# --- health ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "ok"), [(200, True), (204, False), (404, False), (500, False), (503, False)])
def test_health_ok_only_on_200(status: int, ok: bool) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.url)
        return reply(status)

    with _client(handler) as client:
        assert health_ok(client, 3100) is ok
    assert seen == ["http://localhost:3100/health"]


@pytest.mark.parametrize("error", [ConnectError("refused"), ReadTimeout("slow"), ReadError("eof")])
def test_health_ok_false_on_transport_errors(error: HTTPError) -> None:
    def handler(request: Request) -> Response:
        raise error

    with _client(handler) as client:
        assert health_ok(client, 3100) is False


def test_waiting_for_health_sees_a_restarting_service_quickly() -> None:
    """The deploy's health wait: refused while the container starts, then 200 at t=0.3 s."""
    fake = FakeClock()

    def handler(request: Request) -> Response:
        if fake.elapsed < 0.3:
            raise ConnectError("refused")
        return reply(200)

    with _client(handler) as client:
        assert wait_for(lambda: health_ok(client, 3100), 60, fake.clock()) is True
    assert fake.elapsed < 0.5


def test_waiting_for_health_gives_up_at_the_timeout() -> None:
    fake = FakeClock()
    worker = FakeWorker(fake, health_status=503)
    with worker.client() as client:
        assert wait_for(lambda: health_ok(client, 3100), 60, fake.clock()) is False
    assert fake.elapsed == pytest.approx(60, abs=0.01)
    # about one request a second once backed off, plus the quick ones at the start
    assert 60 <= len(worker.requests) <= 80


# --- get_json / worker_health ---------------------------------------------------------------


def test_get_json_variants() -> None:
    with _client(lambda r: reply(200, json={"a": 1})) as client:
        assert get_json(client, "http://localhost:1/x") == (200, {"a": 1})
    with _client(lambda r: reply(500, text="<html>")) as client:
        assert get_json(client, "http://localhost:1/x") == (500, None)
    with _client(_refuse) as client:
        assert get_json(client, "http://localhost:1/x") == (None, None)


def test_worker_health_returns_the_body() -> None:
    body = {"status": "working", "active_jobs": 2, "deploy_safe": False, "worker_id": "w1"}
    with _client(lambda r: reply(200, json=body)) as client:
        assert worker_health(client, 3101) == body
