"""After the switch, targeted workers are checked like the compose worker (engine.checks.check_running)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.engine.host import Operation, check_running
from ghdeploy.engine.plan import instant_clock
from ghdeploy.errors import OperationFailed
from ghdeploy.hostops import ImageRecord, ServiceState, Snapshot, TargetedWorker
from ghdeploy.hosts import Host
from ghdeploy.progress import NullReporter

LAYOUT = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
NEW = ImageRecord("sha256:" + "2" * 64)


def worker(name: str, running: bool, port: int | None = None, restarts: int = 0) -> TargetedWorker:
    return TargetedWorker(ContainerSpec(name, [], []), NEW, port, running, restarts)


class Conn:
    def __init__(self, answering: set[int]) -> None:
        self.host = Host("10.0.0.1")
        self.answering = answering

    def http_client(self, timeout: float = 5.0) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.port in self.answering:
                return httpx.Response(200, json={"status": "idle", "deploy_safe": True})
            return httpx.Response(503)

        return httpx.Client(transport=httpx.MockTransport(answer))


def check(monkeypatch: pytest.MonkeyPatch, now: list[TargetedWorker], recorded: list[TargetedWorker]) -> None:
    services = {
        "api": ServiceState("api", "a", "running", "", NEW),
        "worker": ServiceState("worker", "w", "running", "", NEW),
    }
    monkeypatch.setattr(hostops, "read_snapshot", lambda conn, layout: Snapshot(services=services, targeted=now))
    op = Operation(LAYOUT, NullReporter(), 3100, 3101, 5, 5, 5, clock=instant_clock())
    check_running(Conn({3101, 3201}), op, str(NEW.image_id), recorded)  # type: ignore[arg-type]


def test_running_and_stopped_targeted_workers_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = [worker("gh-worker-1", True, 3201), worker("gh-worker-2", False, 3202)]
    check(monkeypatch, [worker("gh-worker-1", True, 3201), worker("gh-worker-2", False, 3202)], recorded)


@pytest.mark.parametrize(
    ("now", "message"),
    [
        ([worker("gh-worker-1", False, 3201), worker("gh-worker-2", False)], "gh-worker-1 is not staying up"),
        ([worker("gh-worker-1", True, 3201, restarts=2), worker("gh-worker-2", False)], "restarted 2 time"),
        ([worker("gh-worker-1", True, 3201), worker("gh-worker-2", True)], "was stopped before the deploy but runs"),
        ([worker("gh-worker-1", True, 3201)], "gh-worker-2 is gone"),
    ],
)
def test_a_targeted_worker_not_as_it_was_fails_the_host(
    monkeypatch: pytest.MonkeyPatch, now: list[Any], message: str
) -> None:
    recorded = [worker("gh-worker-1", True, 3201), worker("gh-worker-2", False)]
    with pytest.raises(OperationFailed, match=message):
        check(monkeypatch, now, recorded)
