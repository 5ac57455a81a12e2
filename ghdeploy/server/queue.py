"""One deploy at a time, newest queued wins.

A single background thread per receiver. Whenever a webhook was accepted (here or by another
receiver on the same database, seen by polling), it tries to take the store's run lock; the
holder marks deploys left `running` by a dead receiver as `interrupted`, claims the newest
queued deploy (older queued ones become `superseded`), runs it, records the outcome and hands
the record to the callback sender.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ghdeploy.waiting import CancelToken

log = logging.getLogger("ghdeploy.serve")


@dataclass
class Outcome:
    """How a deploy ended, for the record."""

    status: str  # one of store.FINAL
    hosts: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class QueueStore(Protocol):
    """What the queue needs of the store (store.Store has it; unit tests use a fake)."""

    def has_queued(self) -> bool: ...

    def run_lock(self) -> Any: ...

    def interrupt_running(self, why: str) -> list[int]: ...

    def claim(self) -> Any: ...

    def get(self, deploy_id: int) -> dict[str, Any] | None: ...

    def set_progress(self, deploy_id: int, progress: dict[str, str]) -> None: ...

    def finish(
        self, deploy_id: int, status: str, hosts: list[dict[str, Any]], error: str | None, notes: list[str]
    ) -> dict[str, Any] | None: ...


# (record, reporter, cancel) -> Outcome; must not raise for a failed deploy
Deployer = Callable[[dict[str, Any], Any, CancelToken], Outcome]
Finished = Callable[[dict[str, Any]], None]

INTERRUPTED_WHY = "the receiver running this deploy stopped before it ended; its hosts finish or roll back on their own"


class RecordReporter:
    """A Reporter that logs each step and keeps every host's current step in the record (for --wait)."""

    # Every step is saved: a throttle would drop the last step before a long wait (the drain),
    # and --wait would show a stale one for as long as that wait lasts.
    def __init__(self, store: QueueStore, deploy_id: int, min_interval: float = 0.0) -> None:
        self.store = store
        self.deploy_id = deploy_id
        self.min_interval = min_interval
        self.steps: dict[str, str] = {}
        self._lock = threading.Lock()
        self._written = 0.0

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < self.min_interval:
            return
        self._written = now
        try:
            self.store.set_progress(self.deploy_id, dict(self.steps))
        except Exception as exc:  # progress is a courtesy; the deploy goes on
            log.warning("deploy #%s: could not save progress: %s", self.deploy_id, exc)

    def step(self, host: str | None, message: str) -> None:
        with self._lock:
            if self.steps.get(host or "") == message:
                return
            self.steps[host or ""] = message
            self._save()
        log.info("deploy #%s: %s%s", self.deploy_id, f"{host}: " if host else "", message)

    def flush(self) -> None:
        with self._lock:
            self._save(force=True)

    def info(self, message: str) -> None:
        log.info("deploy #%s: %s", self.deploy_id, message)

    def warn(self, message: str) -> None:
        log.warning("deploy #%s: %s", self.deploy_id, message)

    def debug(self, message: str) -> None:
        log.debug("deploy #%s: %s", self.deploy_id, message)


class DeployQueue:
    def __init__(
        self,
        store: QueueStore,
        deployer: Deployer,
        on_finished: Finished | None = None,
        poll: float = 1.0,
    ) -> None:
        self.store = store
        self.deployer = deployer
        self.on_finished = on_finished or (lambda record: None)
        self.poll = poll
        self.cancel = CancelToken()  # set on shutdown: the running deploy stops at a safe point
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.running_id: int | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ghdeploy-deploys", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking deploys; a running one stops at its next safe point. True if the thread ended."""
        self._stopping.set()
        self.cancel.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the loop ---------------------------------------------------------------------------

    def recover(self) -> list[int]:
        """At start-up: deploys left `running` by a receiver that died become `interrupted`
        (only when no other receiver is running one right now)."""
        with self.store.run_lock() as ours:
            if not ours:
                return []
            return self._interrupt_stale()

    def _interrupt_stale(self) -> list[int]:
        ids = self.store.interrupt_running(INTERRUPTED_WHY)
        for deploy_id in ids:
            log.warning("deploy #%s was running when its receiver stopped: marked interrupted", deploy_id)
            self._finished(deploy_id)
        return ids

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if self.step():
                    self._wake.set()  # look again at once: more may have queued meanwhile
            except Exception:
                log.error("deploy queue: %s", traceback.format_exc().strip())

    def step(self) -> bool:
        """Run the newest queued deploy if we may; True if one ran."""
        if not self.store.has_queued():
            return False
        with self.store.run_lock() as ours:
            if not ours:
                return False  # another receiver runs one; its end wakes nobody here, polling does
            self._interrupt_stale()
            claim = self.store.claim()
            if claim is None:
                return False
            for deploy_id in claim.superseded:
                log.info("deploy #%s superseded by #%s", deploy_id, claim.record["id"])
                self._finished(deploy_id)
            self._run(claim.record)
            return True

    def _run(self, record: dict[str, Any]) -> None:
        deploy_id = int(record["id"])
        self.running_id = deploy_id
        log.info("deploy #%s of %s started", deploy_id, record["image_tag"])
        reporter = RecordReporter(self.store, deploy_id)
        try:
            outcome = self.deployer(record, reporter, self.cancel)
        except Exception as exc:  # a bug in the deploy path must not take the receiver down
            log.error("deploy #%s: %s", deploy_id, traceback.format_exc().strip())
            outcome = Outcome(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.running_id = None
        reporter.flush()
        self.store.finish(deploy_id, outcome.status, outcome.hosts, outcome.error, outcome.notes)
        log.info("deploy #%s ended: %s%s", deploy_id, outcome.status, f" ({outcome.error})" if outcome.error else "")
        self._finished(deploy_id)

    def _finished(self, deploy_id: int) -> None:
        record = self.store.get(deploy_id)
        if record is not None:
            try:
                self.on_finished(record)
            except Exception as exc:
                log.warning("deploy #%s: reporting back failed: %s", deploy_id, exc)
