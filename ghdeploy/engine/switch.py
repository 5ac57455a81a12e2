"""The switch on one host: drain the workers, stop them, `compose up -d`, replace the targeted
workers (never destroying one first), wait for /health; the backups go once the host is checked."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.engine.operation import Operation
from ghdeploy.errors import GhdeployError, OperationFailed, SSHError
from ghdeploy.hostops import Snapshot
from ghdeploy.transports.base import Remote
from ghdeploy.waiting import HEALTH_INTERVAL, drain_worker, health_ok, wait_for


def drain_all(op: Operation, conn: Remote, snapshot: Snapshot, cancel: threading.Event | None) -> list[str]:
    """Drain the compose worker and every running targeted worker at once; return notes."""
    label = conn.host.label
    ports: list[tuple[str, int]] = []
    worker = snapshot.services.get("worker")
    if worker is not None and worker.state == "running":
        ports.append(("worker", op.worker_port))
    ports += [(t.spec.name, t.status_port) for t in snapshot.targeted if t.running and t.status_port]
    if not ports:
        return []
    op.reporter.step(label, "draining " + ", ".join(name for name, _ in ports))
    notes: list[str] = []

    def one(name: str, port: int) -> str:
        with conn.http_client(timeout=5.0) as http:
            result = drain_worker(http, port, op.drain_timeout, op.clock, cancel)
        if result.outcome == "no-endpoint":
            return f"{name}: no worker status endpoint, SIGTERM fallback"
        if result.outcome == "timeout":
            return f"{name}: did not drain within {op.drain_timeout:g}s, SIGTERM fallback"
        if result.outcome == "drained":
            return f"{name}: drained in {result.seconds:.1f}s"
        return f"{name}: idle"

    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        for note in pool.map(lambda p: one(*p), ports):
            notes.append(note)
            op.reporter.info(f"{label}: {note}")
    return notes


def switch_to(op: Operation, conn: Remote, snapshot: Snapshot, ref: str, targeted_refs: dict[str, str]) -> None:
    """Stop the worker(s) and start the app on `ref`; targeted workers on targeted_refs[name].

    Each targeted worker is replaced without being destroyed first (hostops.replace_targeted);
    one that was stopped before the deploy is created but stays stopped.
    """
    label = conn.host.label
    compose_worker = snapshot.services.get("worker")
    stopping = ["worker"] if compose_worker is not None and compose_worker.state == "running" else []
    stopping += [w.spec.name for w in snapshot.targeted if w.running]
    if stopping:  # a fresh host has no worker: nothing to wait up to STOP_TIMEOUT for
        op.reporter.step(label, f"stopping {', '.join(stopping)} (up to {op.stop_timeout}s)")
    hostops.require_ok(
        conn.run(rc.compose_stop_rm(op.layout, ref, "worker", op.stop_timeout), timeout=op.stop_timeout + 120),
        "stopping the worker",
        label,
    )
    for worker in snapshot.targeted:
        if worker.running:
            conn.run(rc.stop_container(worker.spec.name, op.stop_timeout), timeout=op.stop_timeout + 120)
    op.reporter.step(label, "docker compose up -d")
    services = None if snapshot.empty else op.image_services(label)
    hostops.require_ok(conn.run(rc.compose_up(op.layout, ref, services), timeout=900), "docker compose up", label)
    for worker in snapshot.targeted:
        image = targeted_refs.get(worker.spec.name)
        if image:
            op.reporter.step(label, f"replacing {worker.spec.name}")
            hostops.replace_targeted(conn, op.layout, worker, image)


def drop_backups(op: Operation, conn: Remote, snapshot: Snapshot) -> list[str]:
    """The switch is checked: remove the targeted workers' backups. Returns notes on failures."""
    notes = []
    for worker in snapshot.targeted:
        try:
            hostops.drop_backup(conn, worker.spec.name)
        except GhdeployError as exc:
            notes.append(f"could not remove the backup of {worker.spec.name}: {exc}")
            op.reporter.warn(f"{conn.host.label}: could not remove the backup of {worker.spec.name}: {exc}")
    return notes


def wait_healthy(op: Operation, conn: Remote, cancel: threading.Event | None) -> float:
    """Poll /health until 200; return seconds waited. Raises OperationFailed on timeout."""
    label = conn.host.label
    op.reporter.step(label, f"waiting for /health (up to {op.health_timeout:g}s)")
    start = op.clock.now()
    with conn.http_client(timeout=2.0) as http:
        healthy = wait_for(
            lambda: link_up(conn) and health_ok(http, op.api_port),
            op.health_timeout,
            op.clock,
            cancel,
            first=HEALTH_INTERVAL / 2,
            max_interval=HEALTH_INTERVAL,
        )
    if not healthy:
        raise OperationFailed(f"{label}: /health did not answer 200 within {op.health_timeout:g}s")
    return op.clock.now() - start


def link_up(conn: Remote) -> bool:
    """True while the connection lives; raises SSHError once it is gone (a dead link must not
    look like an unhealthy service and lead to a rollback over that same dead link)."""
    alive = getattr(conn, "alive", None)
    if alive is not None and not alive():
        raise SSHError(conn.host.label, "SSH connection lost", "check the host's network")
    return True


def link_lost(label: str, exc: BaseException) -> SSHError:
    return SSHError(label, f"SSH connection lost ({exc or type(exc).__name__})", "check the host's network")


def connection_lost(conn: Remote) -> bool:
    alive = getattr(conn, "alive", None)
    return alive is not None and not alive()
