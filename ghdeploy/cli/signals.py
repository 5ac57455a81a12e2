"""How a command hears SIGINT/SIGTERM: as an event it checks at safe points, not as a kill mid-switch."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import Interrupted

if TYPE_CHECKING:
    from ghdeploy.progress import Reporter
    from ghdeploy.waiting import CancelToken


class Signals:
    """While in use, SIGINT/SIGTERM call `_handle` (which sets `event`); the old handlers come back after."""

    def __init__(self, reporter: Reporter, event: threading.Event) -> None:
        self.event = event
        self.reporter = reporter
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __enter__(self) -> Any:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Interrupts(Signals):
    """SIGINT/SIGTERM set an event the deploy checks at safe points, instead of killing it mid-switch."""

    event: CancelToken

    def __init__(self, reporter: Reporter) -> None:
        from ghdeploy.waiting import CancelToken

        super().__init__(reporter, CancelToken())

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.event.armed:
            # Building, pushing or checking: no host has been changed yet, so stop right away.
            self.event.set()
            raise Interrupted(
                f"{signal.Signals(signum).name}: interrupted before any host was changed",
                "nothing to clean up; run the command again when ready",
            )
        if not self.event.is_set():
            self.reporter.warn(
                f"{signal.Signals(signum).name}: stopping at the next safe point; a host mid-switch is rolled back"
            )
        else:
            self.reporter.warn("still finishing the rollback so no host is left half-deployed; please wait")
        self.event.set()

    def __enter__(self) -> CancelToken:
        super().__enter__()
        return self.event


class AgentSignals(Signals):
    """SIGTERM/SIGINT only ask the agent to stop: it finishes (or rolls back) a deploy first."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(reporter, threading.Event())

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            self.reporter.warn(f"{name}: still stopping; a deploy under way finishes or rolls back first")
        else:
            self.reporter.warn(f"{name}: stopping at the next safe point")
        self.event.set()
