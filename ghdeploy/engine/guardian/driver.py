"""The guardian as the driver sees it: arm, renew (Heartbeat), tell the phase, fence every changing
command (FencedRemote), hold it while writing the record, finish; and what it did once it fired."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy.engine.guardian.commands import (
    SwitchPlan,
    disarm,
    fence,
    finish,
    guardian_dir,
    hold,
    launch,
    prepare,
    read_state,
    renew,
    set_phase,
    unhold,
)
from ghdeploy.engine.guardian.scripts import LEASE, RENEW_EVERY, TOOK_OVER, Argv
from ghdeploy.errors import GhdeployError

if TYPE_CHECKING:
    from ghdeploy.hosts import Host
    from ghdeploy.remote_commands import RemoteLayout
    from ghdeploy.transports.base import CommandResult, Remote
    from ghdeploy.transports.http11 import Client


class GuardianTookOver(GhdeployError):
    """The host's guardian fired: the driver was silent too long; the host heals itself."""


@dataclass
class State:
    token: str  # armed | held | fired | done | none
    phase: str
    alive: bool
    result: str | None

    @classmethod
    def parse(cls, text: str) -> State:
        parts = text.split()
        while len(parts) < 4:
            parts.append("")
        return cls(token=parts[0] or "none", phase=parts[1], alive=parts[2] == "yes", result=parts[3] or None)


@dataclass
class Guard:
    """One host's guardian as the driver sees it. Thread-safe enough: renew runs on its own."""

    conn: Remote
    layout: RemoteLayout
    lock_id: str
    lease: int = LEASE
    last_renewal: float = field(default_factory=time.monotonic)
    fired: bool = False
    error: str | None = None

    @property
    def dir(self) -> str:
        return guardian_dir(self.layout, self.lock_id)

    @property
    def label(self) -> str:
        host: Host = self.conn.host
        return host.label

    def _run(self, argv: Argv, *, stdin: bytes | None = None, timeout: float = 30) -> CommandResult:
        result = self.conn.run(argv, stdin=stdin, timeout=timeout)
        return self.checked(result)

    def checked(self, result: CommandResult) -> CommandResult:
        """`result`, unless its exit status says the guardian fired: then GuardianTookOver."""
        if result.rc == TOOK_OVER:
            self.fired = True
            raise GuardianTookOver(
                f"{self.label}: the host's guardian took over (ghdeploy was out of touch for {self.lease}s); "
                "the host heals itself"
            )
        return result

    def _require(self, result: CommandResult, what: str) -> CommandResult:
        if result.rc != 0:
            raise GhdeployError(f"{self.label}: {what} failed (exit {result.rc}): {result.stderr.strip()[-300:]}")
        return result

    def arm(self, records: bytes) -> None:
        """Right after the lock: a lock-phase guardian that frees the lock if we vanish."""
        self._require(self.conn.run(prepare(self.layout, self.lock_id, self.lease), timeout=30), "arming the guardian")
        self._require(self._run(launch(self.layout, self.lock_id, None), stdin=records), "starting the guardian")
        self.last_renewal = time.monotonic()

    def arm_switch(self, plan: SwitchPlan, records: bytes) -> None:
        """Before the first change: a guardian that can put the recorded image back, in phase
        `changing` (the lease renewed first; one command, see commands.launch)."""
        argv = launch(self.layout, self.lock_id, plan, lease=self.lease, phase="changing")
        self._require(self._run(argv, stdin=records, timeout=self.lease), "starting the guardian")
        self.last_renewal = time.monotonic()

    def renew(self) -> None:
        self._require(self._run(renew(self.dir, self.lease), timeout=self.lease), "renewing the guardian")
        self.last_renewal = time.monotonic()

    def phase(self, name: str) -> None:
        self._require(self._run(set_phase(self.dir, name)), f"telling the guardian '{name}'")

    @contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        """While held, the driver writes its record with its usual commands; call the yielded
        function once it is written (the phase then says `recorded`)."""
        self._require(self._run(hold(self.dir)), "holding the guardian")
        written = [False]
        try:
            yield lambda: written.__setitem__(0, True)
        finally:
            self._require(self._run(unhold(self.dir, written[0])), "giving the guardian back")

    def disarm(self) -> None:
        """For good: the driver ended the deploy on this host (and freed the lock itself)."""
        self._require(self._run(disarm(self.dir)), "disarming the guardian")

    def finish(self) -> bool:
        """Disarm and free the lock; False if another lock holds the host now."""
        result = self._run(finish(self.dir, self.layout, self.lock_id))
        if result.rc == 75:
            return False
        self._require(result, "releasing the deploy lock")
        return True

    def state(self) -> State:
        return State.parse(self.conn.run(read_state(self.dir), timeout=30).stdout)

    def wait_outcome(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str | None:
        """After it fired: what the guardian ended with (restored/kept/failed/untouched), or None."""
        end = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.result:
                return state.result
            if (not state.alive and state.token != "armed") or time.monotonic() >= end:
                return None
            sleep(1.0)

    def fenced(self, via: Remote | None = None) -> Remote:
        """`via` (default: the guard's own connection), with every command fenced by this guardian.

        A recording transport stays on top: -v and the plan show the command itself, the fence
        (a 3-line wrapper, FENCE_SCRIPT) is applied underneath.
        """
        from ghdeploy.transports.recording import RecordingRemote

        via = via or self.conn
        if isinstance(via, RecordingRemote):
            outer = RecordingRemote(FencedRemote(self, via.backend), on_record=via.on_record)
            outer.recorded = via.recorded
            return outer
        return FencedRemote(self, via)


class FencedRemote:
    """A transport whose every command is fenced: none starts once the guardian fired."""

    def __init__(self, guard: Guard, via: Remote) -> None:
        self.guard = guard
        self.via = via
        self.host = via.host

    def run(self, argv: Argv, *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return self.guard.checked(self.via.run(fence(self.guard.dir, argv), stdin=stdin, timeout=timeout))

    def check(self, argv: Argv, *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        from ghdeploy.errors import RemoteCommandError

        result = self.run(argv, stdin=stdin, timeout=timeout)
        if result.rc != 0:
            raise RemoteCommandError(self.host.label, " ".join(argv[:3]), result.rc, result.stderr)
        return result

    def http_client(self, timeout: float = 5.0) -> Client:
        return self.via.http_client(timeout)

    def __getattr__(self, name: str) -> Any:
        # Anything else the transport offers (alive, reconnect, close) is the underlying one's.
        return getattr(self.via, name)


class Heartbeat:
    """Renews every guard every RENEW_EVERY s, each host on its own thread (a dead link must not
    delay the others' renewals)."""

    def __init__(self, guards: list[Guard], every: float = RENEW_EVERY) -> None:
        self.guards = guards
        self.every = every
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(g,), daemon=True) for g in guards]

    def _loop(self, guard: Guard) -> None:
        while not self._stop.wait(self.every):
            if guard.fired:
                return
            try:
                guard.renew()
            except GuardianTookOver:
                return
            except (GhdeployError, EOFError, OSError) as exc:
                # the host thread notices the lost link itself; a raw transport error must not end
                # this thread with a traceback on stderr
                guard.error = str(exc) or f"SSH connection lost ({type(exc).__name__})"

    def __enter__(self) -> Heartbeat:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
