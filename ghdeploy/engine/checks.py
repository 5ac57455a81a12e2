"""After a switch: the api really runs the image, and every worker stays up on it."""

from __future__ import annotations

from ghdeploy import hostops
from ghdeploy.engine.operation import Operation
from ghdeploy.errors import OperationFailed
from ghdeploy.hostops import Snapshot
from ghdeploy.transports.base import Remote
from ghdeploy.waiting import worker_health

# How long a restarted worker without a status endpoint must stay up before it counts as started.
WORKER_SETTLE = 3.0


def _api_runs(label: str, after: Snapshot, image_id: str) -> None:
    api = after.services.get("api")
    if api is None or api.image.image_id != image_id:
        running = api.image.image_id[:19] if api and api.image.image_id else "nothing"
        raise OperationFailed(f"{label}: api runs {running}, expected {image_id[:19]}")


def _compose_worker_up(after: Snapshot, image_id: str) -> tuple[bool, str]:
    """(running on `image_id` and never restarted, how it is)."""
    worker = after.services.get("worker")
    ok = worker is not None and worker.state == "running" and not worker.restarts
    ok = ok and worker is not None and worker.image.image_id == image_id
    state = "gone" if worker is None else f"{worker.state}, restarted {worker.restarts} time(s)"
    return ok, state


def _targeted_up(label: str, name: str, after: Snapshot, should_run: bool) -> tuple[bool, str] | None:
    """(running and never restarted, how it is); None for one stopped before the deploy that is
    still stopped (nothing to wait for)."""
    current = next((w for w in after.targeted if w.spec.name == name), None)
    if current is None:
        raise OperationFailed(f"{label}: {name} is gone after the switch")
    if not should_run:
        if current.running:
            raise OperationFailed(f"{label}: {name} was stopped before the deploy but runs now")
        return None
    return current.running and not current.restarts, f"running={current.running}, restarted {current.restarts} time(s)"


def check_running(
    conn: Remote, op: Operation, image_id: str, targeted: list[hostops.TargetedWorker] | None = None
) -> None:
    """The api must really run `image_id` now (compose could have kept an old container), and the
    worker must be up on it too: a worker that crashes at start is as bad as a failing /health.

    The worker counts as up once its /worker/health answers; one without a status endpoint (an
    older image) must stay running, never restarted, for WORKER_SETTLE seconds. Targeted workers
    (`targeted`, as recorded before the switch) are checked the same way; one that was stopped
    must exist and still be stopped.
    """
    label = conn.host.label
    after = hostops.read_snapshot(conn, op.layout)
    _api_runs(label, after, image_id)
    deadline = op.clock.now() + WORKER_SETTLE
    pending: dict[str, int | None] = {}
    if after.services.get("worker") is not None:
        pending["worker"] = op.worker_port
    for recorded in targeted or []:
        pending[recorded.spec.name] = recorded.status_port
    should_run = {w.spec.name: w.running for w in targeted or []}
    with conn.http_client(timeout=2.0) as http:
        while True:
            for name in list(pending):
                up: tuple[bool, str] | None
                if name == "worker":
                    what, up = "the worker", _compose_worker_up(after, image_id)
                else:
                    what, up = name, _targeted_up(label, name, after, should_run[name])
                if up is None:
                    pending.pop(name)
                    continue
                ok, state = up
                if not ok:
                    raise OperationFailed(f"{label}: {what} is not staying up after the restart ({state})")
                port = pending[name]
                if (port is not None and worker_health(http, port) is not None) or op.clock.now() >= deadline:
                    pending.pop(name)
            if not pending:
                return
            op.clock.sleep(0.2)
            after = hostops.read_snapshot(conn, op.layout)
