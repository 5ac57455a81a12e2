"""Work on many hosts at once: connect, preflight, lock, and the rolling deploy."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ghdeploy import hostops, locks
from ghdeploy import remote_commands as rc
from ghdeploy.config import Config
from ghdeploy.engine import guardian
from ghdeploy.engine.connect import (  # re-exported: the read-only commands import them from here too
    HostOptions,
    close_all,
    connect_all,
    layout_of,
    parallel,
    ssh_settings,
)
from ghdeploy.engine.host import Operation, run_host
from ghdeploy.errors import GhdeployError, PreflightError
from ghdeploy.hostfit import MachineFacts, parse_facts
from ghdeploy.hosts import Host
from ghdeploy.progress import Reporter
from ghdeploy.records import LockInfo
from ghdeploy.results import Action, FleetResult, HostResult, Result, Target
from ghdeploy.transports.base import Remote
from ghdeploy.transports.recording import Recorded, RecordingRemote

if TYPE_CHECKING:
    from ghdeploy.transports.ssh import Connection


def preflight_hosts(
    conns: Mapping[str, Remote],
    layout: rc.RemoteLayout,
    reporter: Reporter,
    facts: dict[str, hostops.HostFacts] | None = None,
    machine: dict[str, MachineFacts] | None = None,
) -> dict[str, str]:
    """Docker, compose, the app directory and compose file on every host; problems by host label.

    With `facts` (a deploy or rollback), also what the compose file and the running containers
    allow (hostops.preflight_facts), filled in by host label. With `machine`, each host's docker
    data root, architecture and free space, read by the same preflight call (hostfit).
    """
    problems: dict[str, str] = {}

    def one(item: tuple[str, Remote]) -> None:
        label, conn = item
        reporter.step(label, "preflight")
        try:
            res = conn.run(rc.preflight(layout), timeout=60)
        except GhdeployError as exc:
            problems[label] = str(exc)
            return
        if res.rc != 0:
            what = rc.PREFLIGHT_CODES.get(res.rc, f"preflight failed (exit {res.rc}): {res.stderr.strip()[-200:]}")
            if res.rc == 13:
                what += f" ({layout.app_dir})"
            elif res.rc == 14:
                what += f" ({layout.compose_file})"
            problems[label] = what
            return
        if machine is not None:
            parsed = parse_facts("\n".join(res.stdout.splitlines()[1:]))
            if parsed is not None:
                machine[label] = parsed
        if facts is not None:
            try:
                found = hostops.preflight_facts(conn, layout)
            except GhdeployError as exc:
                problems[label] = str(exc)
                return
            facts[label] = found
            if found.problems:
                problems[label] = "; ".join(found.problems)
                return
            for note in found.notes:
                reporter.warn(f"{label}: {note}")
        reporter.step(label, "ready")

    parallel(list(conns.items()), one, limit=32)
    return problems


def raise_for_host_problems(problems: dict[str, str], hint: str | None = None) -> None:
    if problems:
        # An SSHError's text already starts with the host: say it once.
        lines = [
            problem if problem.startswith(f"{host}: ") else f"{host}: {problem}" for host, problem in problems.items()
        ]
        raise PreflightError(
            f"{len(problems)} host(s) not ready, no host was touched:\n  " + "\n  ".join(lines),
            hint,
        )


def rolling(
    op: Operation,
    conns: Mapping[str, Remote],
    order: list[str],
    target_for: Callable[[str], Target],
    batch: int,
    action: Action | str,
) -> FleetResult:
    """Deploy host by host (or `batch` at a time); stop at the first failure or interruption."""
    start = time.monotonic()
    results: dict[str, HostResult] = {label: HostResult(host=label, action=Action(action)) for label in order}
    if len(order) > batch:
        for n, label in enumerate(order, 1):
            op.reporter.step(label, f"waiting its turn ({n} of {len(order)})")
    stopped = False
    for i in range(0, len(order), max(1, batch)):
        group = order[i : i + batch]
        if stopped or op.cancel.is_set():
            break
        outcomes = parallel(group, lambda label: run_host(op, conns[label], target_for(label), action))
        for outcome in outcomes:
            results[outcome.host] = outcome
            op.reporter.step(outcome.host, outcome.result)
        if any(not o.succeeded for o in outcomes):
            stopped = True
    for label in order:
        if results[label].result == Result.UNTOUCHED and results[label].target is None:
            results[label].notes.append("not reached: the rollout stopped before this host")
            op.reporter.step(label, "untouched (the rollout stopped before this host)")
    first = next(iter(results.values()), None)
    target = first.target if first else None
    return FleetResult(
        action=Action(action),
        target=target,
        hosts=[results[label] for label in order],
        interrupted=op.cancel.is_set(),
        duration=time.monotonic() - start,
    )


@dataclass
class Fleet:
    """Open, preflighted and (unless a dry run) locked connections to the hosts of one operation."""

    hosts: list[Host]
    conns: dict[str, Connection]
    layout: rc.RemoteLayout
    locked: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # hosts whose lock was asked for (maybe taken)
    reporter: Reporter | None = None
    lock_id: str | None = None  # the id in our lock records: we release only locks we still hold
    # The same connections, recording every command: with -v each is shown as it runs.
    remotes: dict[str, Remote] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, conn in self.conns.items():
            if label not in self.remotes:
                self.remotes[label] = RecordingRemote(conn, on_record=_tracer(self.reporter, label))

    facts: dict[str, hostops.HostFacts] = field(default_factory=dict)  # from preflight, by host label
    machine: dict[str, MachineFacts] = field(default_factory=dict)  # docker root, architecture, free disk
    guards: dict[str, guardian.Guard] = field(default_factory=dict)  # armed with each lock
    heartbeat: guardian.Heartbeat | None = None

    @property
    def order(self) -> list[str]:
        return [h.label for h in self.hosts]

    def arm_guardians(self, lock: LockInfo) -> None:
        """A guardian on every locked host, renewed from here: if we vanish, each host frees its
        lock (and, if it was mid-switch, heals itself) with no further command from anyone."""
        base = {
            "action": lock.action,
            "operator": lock.operator,
            "message": lock.message,
            "from": None,
            "to": {"label": lock.tag},
        }
        records = guardian.record_lines(base)
        problems: dict[str, str] = {}
        for label in self.locked:
            guard = guardian.Guard(self.conns[label], self.layout, str(lock.id))
            try:
                guard.arm(records)
            except GhdeployError as exc:
                problems[label] = f"could not start the host's guardian: {exc}"
                continue
            self.guards[label] = guard
        self.heartbeat = guardian.Heartbeat(list(self.guards.values())).__enter__()
        raise_for_host_problems(
            problems, "the host needs a POSIX sh with setsid or nohup, and a writable GHOSTHANDS_DIR"
        )

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        for label in self.asked:
            if label not in self.locked and self.lock_id:
                with contextlib.suppress(Exception):  # maybe never taken: only ours is removed
                    locks.release(self.remotes[label], self.layout, self.lock_id)
        for label in self.locked:
            guard = self.guards.get(label)
            try:
                if guard is not None and guard.fired:
                    continue  # the guardian frees the lock itself (the host's result says so)
                # The lock first, then the guardian: dying in between leaves a guardian that
                # finds the deploy recorded and the lock gone, and only ends.
                released = locks.release(self.remotes[label], self.layout, self.lock_id)
                if guard is not None:
                    guard.disarm()
                if not released and self.reporter is not None:
                    self.reporter.warn(
                        f"{label}: this operation no longer holds the deploy lock (someone ran `ghdeploy lock "
                        "release` meanwhile) and left the lock now there in place"
                    )
            except guardian.GuardianTookOver:
                if self.reporter is not None:
                    self.reporter.warn(f"{label}: the host's guardian took over; it frees the lock itself")
            except (GhdeployError, EOFError, OSError) as exc:  # a raw one: a link that just died
                if self.reporter is not None:
                    hint = (
                        f"its guardian frees it within {guardian.LEASE}s"
                        if guard is not None
                        else f"`ghdeploy lock release --host {label}`"
                    )
                    self.reporter.warn(f"{label}: could not release the deploy lock ({exc}); {hint}")
        close_all(self.conns)


def open_fleet(
    config: Config,
    hosts: list[Host],
    opts: HostOptions,
    reporter: Reporter,
    lock: LockInfo | None,
    host_check: Callable[[dict[str, MachineFacts]], tuple[dict[str, str], str | None]] | None = None,
) -> Fleet:
    """Connect to all hosts, preflight them, take their locks. Touches nothing if any host fails.

    `host_check` judges the hosts' facts (architecture, free disk) against what is about to be
    deployed: (problems by host, hint); any problem refuses them all, before a lock is taken.
    """
    layout = layout_of(config)
    conns, errors = connect_all(hosts, ssh_settings(config, opts.accept_new_host_key), reporter)
    fleet = Fleet(hosts=hosts, conns=conns, layout=layout, reporter=reporter, lock_id=lock.id if lock else None)
    try:
        if errors:
            hints = {e.hint for e in errors.values() if e.hint}
            raise_for_host_problems({k: str(v) for k, v in errors.items()}, "; ".join(sorted(hints)) or None)
        raise_for_host_problems(
            preflight_hosts(fleet.remotes, layout, reporter, fleet.facts, fleet.machine),
            "fix the host(s) named above, then run again",
        )
        if host_check is not None:
            problems, hint = host_check(fleet.machine)
            raise_for_host_problems(problems, hint)
        if lock is not None:
            held: dict[str, str] = {}
            for label in fleet.order:
                # Counted as ours before asking: a Ctrl-C while the host answers must not leave a
                # lock nobody records. Releasing by our id is harmless if we did not get it.
                fleet.asked.append(label)
                holder = locks.acquire(fleet.remotes[label], layout, lock)
                if holder is None:
                    fleet.locked.append(label)
                else:
                    fleet.asked.remove(label)
                    held[label] = locks.describe(holder)
            if held:
                lines = "\n  ".join(f"{h}: {d}" for h, d in held.items())
                raise locks.LockHeld(
                    f"another deploy is running, no host was touched:\n  {lines}",
                    "wait for it to finish; if it is stale, `ghdeploy lock release --host HOST`",
                )
            fleet.arm_guardians(lock)
    except BaseException:
        fleet.close()
        raise
    return fleet


def _tracer(reporter: Reporter | None, label: str) -> Callable[[Recorded], None] | None:
    """Show each remote command as it runs (the reporter prints debug lines only with -v)."""
    if reporter is None:
        return None
    return lambda entry: reporter.debug(f"{label}: {entry.line}")
