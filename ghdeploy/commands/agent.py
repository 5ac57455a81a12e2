"""`ghdeploy agent`: on a host, follow AGENT_TAG in the registry and deploy each new digest here.

Each poll: an ECR token (boto3's chain; renewed well before it expires), tag -> digest with a
HEAD through the registry's V2 API, compared with the repo digest the api/worker run. A new
digest is deployed BY DIGEST (`<registry>/<repo>@sha256:...`, so a tag that moves mid-deploy
cannot mix two images) by the same per-host engine as `ghdeploy deploy`, over the local
transport, under the same host lock. A digest that was rolled back here (or, with a fleet
table, anywhere) is not tried again: the agent waits for the tag to point somewhere new.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghdeploy import __version__, agent_status, hostops, locks, records, registry
from ghdeploy import remote_commands as rc
from ghdeploy.commands.common import operation
from ghdeploy.config import Config
from ghdeploy.engine import guardian
from ghdeploy.engine.fleet import layout_of
from ghdeploy.engine.host import HostResult, Operation, Target, ensure_image, run_host
from ghdeploy.errors import ExitCode, GhdeployError
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy.aws.fleet_table import FleetTable, Lease
    from ghdeploy.hostops import Snapshot
    from ghdeploy.registry import RegistryAuth
    from ghdeploy.transports.base import Remote

# ECR tokens live 12 h: take a new one an hour before the old one ends (or after 6 h when the
# expiry is unknown), so a poll never runs with a token that dies half-way through a pull.
TOKEN_REFRESH_BEFORE = 3600.0
TOKEN_MAX_AGE = 6 * 3600.0
# Fleet leases: short, renewed while the deploy runs; a dead host's slot frees itself in LEASE_TTL.
LEASE_TTL = 60.0
LEASE_RENEW = 15.0
LEASE_POLL = 2.0
# Results that mean "this image is broken": remembered, never retried until the tag moves.
BROKEN_RESULTS = ("rolled back", "rollback failed")
HISTORY_SCAN = 200

ACTIONS = ("none", "deployed", "rolled back", "skipped", "failed", "rollback failed")


def now_iso() -> str:
    return records.now_iso()


def short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


class TokenSource:
    """The registry login, kept and renewed well before ECR's 12 h expiry."""

    def __init__(
        self,
        region: str,
        registry_host: str,
        login: Callable[[str, str], RegistryAuth] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self.registry = registry_host
        self._login = login or registry.get_login
        self._now = now
        self._auth: RegistryAuth | None = None
        self._fetched = 0.0

    def _stale(self, now: float) -> bool:
        if self._auth is None:
            return True
        if self._auth.expires_at is not None:
            return self._auth.expires_at - now < TOKEN_REFRESH_BEFORE
        return now - self._fetched > TOKEN_MAX_AGE

    def get(self) -> RegistryAuth:
        now = self._now()
        if self._stale(now):
            self._auth = self._login(self.region, self.registry)
            self._fetched = now
        assert self._auth is not None
        return self._auth

    def invalidate(self) -> None:
        """Forget the token (the registry refused it, or could not be asked): log in again next time."""
        self._auth = None


@dataclass
class PollOutcome:
    """What one poll did: the `--once --json` document and one log line of the long-running agent."""

    action: str  # one of ACTIONS
    tag: str
    digest: str | None = None  # what the tag points at in the registry
    running: str | None = None  # the repo digest the app runs after this poll
    reason: str = ""
    exit_code: int = int(ExitCode.OK)
    time: str = field(default_factory=now_iso)
    deploy: HostResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "tag": self.tag,
            "digest": self.digest,
            "running": self.running,
            "reason": self.reason,
            "time": self.time,
            "exit_code": self.exit_code,
            "deploy": self.deploy.to_dict() if self.deploy else None,
        }

    def summary(self) -> dict[str, Any]:
        """The small version kept in the heartbeat file."""
        return {k: v for k, v in self.to_dict().items() if k != "deploy"}


def running_digests(snapshot: Snapshot) -> set[str | None]:
    """The repo digests of the compose api and worker (None for one not from a registry)."""
    return {snapshot.services[s].image.digest for s in ("api", "worker") if s in snapshot.services}


def broken_here(history: list[dict[str, Any]], digest: str) -> dict[str, Any] | None:
    """The newest record that says `digest` must not be deployed here again, if any.

    A deploy of it that was rolled back (not because we were interrupted) marks it broken; so does
    an operator's rollback away from it. A later successful deploy of it clears that.
    """
    for record in reversed(history):
        to = record.get("to") or {}
        frm = record.get("from") or {}
        action, result = record.get("action"), record.get("result")
        if action == "deploy" and to.get("digest") == digest:
            if result in BROKEN_RESULTS and record.get("error") != "interrupted":
                return record
            if result == "succeeded":
                return None
        if action == "rollback" and result == "succeeded" and frm.get("digest") == digest:
            return record
    return None


class Agent:
    def __init__(
        self,
        config: Config,
        conn: Remote,
        reporter: Reporter,
        cancel: threading.Event,
        *,
        tokens: TokenSource | None = None,
        table: FleetTable | None = None,
    ) -> None:
        self.config = config
        self.conn = conn
        self.reporter = reporter
        self.cancel = cancel
        self.tag = config.text("AGENT_TAG")
        self.interval = float(config.number("AGENT_INTERVAL"))
        self.repository = config.repository
        self.image_name = config.image_name
        self.layout = layout_of(config)
        self.batch = config.number("AGENT_FLEET_BATCH")
        self.tokens = tokens or TokenSource(config.text("AWS_REGION"), config.registry)
        self.table = table
        self.operator = f"ghdeploy-agent@{conn.host.label}"
        self.token = secrets.token_hex(8)  # this process's identity in fleet leases
        self.started = now_iso()
        self.last: PollOutcome | None = None
        self.last_poll: str | None = None

    # --- the heartbeat file -------------------------------------------------------------------

    def deploy_budget(self) -> float:
        """The longest a deploy (and its rollback) may keep the agent from its next heartbeat."""
        c = self.config
        per_switch = c.number("DRAIN_TIMEOUT") + c.number("STOP_TIMEOUT") + c.number("HEALTH_TIMEOUT") + 120
        return 2 * per_switch + 900  # the pull, then the switch and, at worst, the rollback

    def write_status(self, state: str, busy_for: float | None = None) -> None:
        now = datetime.now(UTC)
        due = busy_for if busy_for is not None else self.interval * 2 + 30
        record = {
            "schema": agent_status.SCHEMA,
            "state": state,
            "tag": self.tag,
            "interval": self.interval,
            "fleet_table": self.table.name if self.table else None,
            "pid": os.getpid(),
            "operator": self.operator,
            "started": self.started,
            "heartbeat": agent_status.iso(now),
            "expect_by": agent_status.iso(now + timedelta(seconds=due)),
            "last_poll": self.last_poll,
            "last_result": self.last.summary() if self.last else None,
            "ghdeploy": __version__,
        }
        try:
            self.conn.check(
                rc.write_file(self.layout.state_dir, agent_status.path(self.layout)),
                stdin=json.dumps(record).encode(),
                timeout=30,
            )
        except GhdeployError as exc:
            self.reporter.warn(f"could not write the agent status file: {exc}")

    # --- one poll -----------------------------------------------------------------------------

    def poll(self) -> PollOutcome:
        """One poll; never raises for a failure it can describe (that is the outcome)."""
        self.last_poll = now_iso()
        outcome = PollOutcome(action="none", tag=self.tag)
        try:
            outcome = self._poll(outcome)
        except GhdeployError as exc:
            # Keep what was learnt before the failure (the tag's digest, what runs).
            outcome.action, outcome.reason, outcome.exit_code = "failed", str(exc), int(ExitCode.FAILED)
            if exc.hint:
                outcome.reason += f" ({exc.hint})"
        self.last = outcome
        return outcome

    def _interrupted(self, outcome: PollOutcome) -> PollOutcome:
        outcome.action = "none"
        outcome.reason = "interrupted before anything changed"
        outcome.exit_code = int(ExitCode.INTERRUPTED)
        return outcome

    def _poll(self, out: PollOutcome) -> PollOutcome:
        self.reporter.step(None, f"resolving {self.repository}:{self.tag}")
        try:
            auth = self.tokens.get()
            digest = registry.resolve_digest(auth, self.repository, self.tag)
        except GhdeployError:
            self.tokens.invalidate()
            raise
        out.digest = digest
        snapshot = hostops.read_snapshot(self.conn, self.layout)
        app = snapshot.app_image
        out.running = app.digest if app else None
        if digest is None:
            out.reason = f"{self.repository}:{self.tag} is not in the registry"
            return out
        if running_digests(snapshot) == {digest}:
            out.reason = "already running"
            return out
        history = hostops.read_history(self.conn, self.layout, HISTORY_SCAN)
        broken = broken_here(history, digest)
        if broken is not None:
            out.action = "skipped"
            how = "rolled back by an operator" if broken.get("action") == "rollback" else str(broken.get("result"))
            out.reason = (
                f"{short(digest)} failed here at {broken.get('time')} ({how}); "
                f"waiting for {self.tag} to point at a new image"
            )
            return out
        if self.cancel.is_set():
            return self._interrupted(out)
        with self._fleet_slot(digest, out, lambda: self._prepull(auth, digest)) as lease:
            if out.action != "none" or out.exit_code:
                return out
            return self._deploy(out, auth, digest, lease)

    def target(self, digest: str) -> Target:
        return Target(
            ref=f"{self.image_name}@{digest}", label=f"{self.repository}:{self.tag}@{digest[7:19]}", digest=digest
        )

    def _operation(self, auth: RegistryAuth) -> Operation:
        op = operation(self.config, self.reporter, self.cancel, f"agent: {self.repository}:{self.tag}")
        op.auth = auth
        op.operator = self.operator
        return op

    def _prepull(self, auth: RegistryAuth, digest: str) -> None:
        """Pull before queueing for a fleet slot: hosts pull at once, only the switches take turns.

        Pulling needs no lock (it changes nothing that runs); run_host then finds the image there.
        """
        ensure_image(self._operation(auth), self.conn, self.target(digest))

    @contextlib.contextmanager
    def _fleet_slot(self, digest: str, out: PollOutcome, prepare: Callable[[], None]) -> Iterator[Lease | None]:
        """With a fleet table: skip a digest that failed anywhere, else hold a switch slot meanwhile."""
        if self.table is None:
            yield None
            return
        if self._failed_in_fleet(digest, out):
            yield None
            return
        prepare()
        lease = self._wait_for_lease(digest)
        if lease is None:
            self._interrupted(out)
            yield None
            return
        try:
            # Checked again with the slot held: the host before us may have failed it meanwhile.
            self._failed_in_fleet(digest, out)
            yield lease
        finally:
            try:
                self.table.release(lease)
            except GhdeployError as exc:
                self.reporter.warn(f"could not release the fleet lease (it expires in {LEASE_TTL:g}s): {exc}")

    def _failed_in_fleet(self, digest: str, out: PollOutcome) -> bool:
        assert self.table is not None
        failed = self.table.failed(digest)
        if failed is None:
            return False
        out.action = "skipped"
        out.reason = (
            f"{short(digest)} failed on {failed.get('host', '?')} at {failed.get('time', '?')} "
            f"(fleet table {self.table.name}); waiting for {self.tag} to point at a new image"
        )
        return True

    def _wait_for_lease(self, digest: str) -> Lease | None:
        assert self.table is not None
        shown = ""
        while not self.cancel.is_set():
            lease = self.table.acquire(self.conn.host.label, self.token, digest, self.batch, LEASE_TTL)
            if lease is not None:
                return lease
            holders = self.table.holders(self.batch)
            who = ", ".join(str(h.get("holder")) for h in holders) or "another host"
            if who != shown:
                self.reporter.info(f"waiting for a fleet slot ({self.batch} at a time): {who} is switching")
                shown = who
            self.write_status("waiting for a fleet slot")
            self.cancel.wait(LEASE_POLL)
        return None

    @contextlib.contextmanager
    def _renewing(self, lease: Lease | None) -> Iterator[None]:
        if lease is None or self.table is None:
            yield
            return
        table = self.table
        stop = threading.Event()

        def renew() -> None:
            current: Lease | None = lease
            while current is not None and not stop.wait(LEASE_RENEW):
                try:
                    current = table.renew(current, LEASE_TTL)
                except GhdeployError as exc:
                    self.reporter.warn(f"could not renew the fleet lease: {exc}")
                    continue
                if current is None:
                    self.reporter.warn("the fleet lease expired and was taken by another host")

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    def _deploy(self, out: PollOutcome, auth: RegistryAuth, digest: str, lease: Lease | None) -> PollOutcome:
        if self.cancel.is_set():
            return self._interrupted(out)
        info = locks.lock_info(self.operator, "deploy", self.tag, f"agent: {self.tag} is {short(digest)}")
        holder = locks.acquire(self.conn, self.layout, info)
        if holder is not None:
            out.action = "skipped"
            out.reason = f"the host's deploy lock is {locks.describe(holder)}"
            out.exit_code = int(ExitCode.LOCKED)
            return out
        target = self.target(digest)
        self.reporter.info(f"{self.tag} moved to {short(digest)} (running {short(out.running)}): deploying it")
        # The host's guardian, as for a laptop deploy: if this process is killed mid-switch (the
        # guardian runs in its own session, so it outlives us), the host heals itself.
        guard: guardian.Guard | None = guardian.Guard(self.conn, self.layout, info["id"])
        try:
            assert guard is not None
            guard.arm(guardian.record_lines({"action": "deploy", "operator": self.operator, "to": {"label": self.tag}}))
        except GhdeployError as exc:
            self.reporter.warn(f"could not start the host's guardian ({exc}); deploying without it")
            guard = None
        try:
            self.write_status("deploying", busy_for=self.deploy_budget())
            op = self._operation(auth)
            if guard is not None:
                op.guards = {self.conn.host.label: guard}
            with self._renewing(lease), guardian.Heartbeat([guard] if guard is not None else []):
                result = run_host(op, self.conn, target)
            if result.succeeded:
                self._prune(result)  # still under the lock, as a laptop deploy prunes
            if result.result in BROKEN_RESULTS and result.error != "interrupted" and self.table is not None:
                # Marked before our slot is released: the next host sees it before it can start.
                try:
                    self.table.mark_failed(digest, self.conn.host.label, result.error or result.result, now_iso())
                except GhdeployError as exc:
                    self.reporter.warn(f"could not mark {short(digest)} failed in the fleet table: {exc}")
        finally:
            try:
                if guard is not None and guard.fired:
                    pass  # the guardian took over: it frees the lock itself
                elif not (guard.finish() if guard is not None else locks.release(self.conn, self.layout, info["id"])):
                    self.reporter.warn("the deploy lock was taken over meanwhile; left it in place")
            except guardian.GuardianTookOver:
                self.reporter.warn("the host's guardian took over; it frees the lock itself")
            except GhdeployError as exc:
                self.reporter.warn(f"could not release the deploy lock: {exc}")
        out.deploy = result
        after = hostops.read_snapshot(self.conn, self.layout).app_image
        out.running = after.digest if after else None
        if result.result == "succeeded":
            out.action = "deployed"
            out.reason = f"{self.tag} moved to {short(digest)}; healthy in {result.duration:.1f}s"
        elif result.result == "untouched":
            self._interrupted(out)
        else:
            out.action = result.result if result.result in ACTIONS else "failed"
            why = result.error or "deploy failed"
            out.reason = f"{why}; {short(digest)} will not be tried again until {self.tag} moves"
            if result.error == "interrupted":
                out.reason = "interrupted mid-deploy: put back what ran before"
            out.exit_code = int(ExitCode.INTERRUPTED if result.error == "interrupted" else ExitCode.FAILED)
        return out

    def _prune(self, result: HostResult) -> None:
        """Keep the last RETAIN_RELEASES releases' images, remove the repository's others (prune.py).
        A problem is a warning and a note, never a failed deploy."""
        from ghdeploy.prune import prune_host, summary

        try:
            pruned = prune_host(self.conn, self.layout, self.image_name, self.config.retain_releases)
        except GhdeployError as exc:
            self.reporter.warn(f"prune after the deploy: {exc}")
            return
        line = summary(pruned)
        result.notes.append(f"disk: {line}")
        if pruned.ok:
            self.reporter.info(line)
        else:
            self.reporter.warn(line)

    # --- the loop -----------------------------------------------------------------------------

    def run(self, emit: Callable[[str, dict[str, Any]], None], once: bool) -> int:
        """Poll until cancelled (or once). `emit(kind, data)` gets one call per event worth a log line."""
        self.write_status("starting")
        if not once:
            emit(
                "started",
                {
                    "tag": self.tag,
                    "interval": self.interval,
                    "image": self.image_name,
                    "fleet_table": self.table.name if self.table else None,
                    "pid": os.getpid(),
                },
            )
        logged: tuple[str, str | None, str] | None = None
        code = int(ExitCode.OK)
        try:
            while True:
                outcome = self.poll()
                self.write_status("idle")
                key = (outcome.action, outcome.digest, outcome.reason)
                if once or outcome.action != "none" or key != logged:
                    emit("poll", outcome.to_dict())
                    logged = key
                if once:
                    code = outcome.exit_code
                    break
                if self.cancel.wait(self.interval):
                    break
        finally:
            self.write_status("stopped")
        if not once:
            emit("stopped", {"reason": "signal" if self.cancel.is_set() else "done"})
        return code


def build_agent(config: Config, reporter: Reporter, cancel: threading.Event) -> Agent:
    from ghdeploy.transports.local import LocalConnection

    table = None
    if config.get("AGENT_FLEET_TABLE"):
        from ghdeploy.aws.fleet_table import FleetTable

        table = FleetTable(config.text("AGENT_FLEET_TABLE"), config.text("AWS_REGION"))
    return Agent(config, LocalConnection(), reporter, cancel, table=table)


def init_table(config: Config) -> dict[str, Any]:
    from ghdeploy.aws.fleet_table import FleetTable
    from ghdeploy.errors import ConfigError

    name = config.get("AGENT_FLEET_TABLE")
    if not name:
        raise ConfigError(
            "AGENT_FLEET_TABLE is not set", "set it to the DynamoDB table name the fleet's agents should share"
        )
    table = FleetTable(name, config.text("AWS_REGION"))
    created = table.create_or_exists()
    return {"table": name, "region": config.text("AWS_REGION"), "created": created}
