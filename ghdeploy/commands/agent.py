"""`ghdeploy agent`: on a host, follow AGENT_TAG in the registry and deploy each new digest here.

Each poll: an ECR token (boto3's chain; renewed well before it expires: agent_token.py), tag ->
digest with a HEAD through the registry's V2 API, compared with the repo digest the api/worker
run. A new digest is deployed BY DIGEST (`<registry>/<repo>@sha256:...`, so a tag that moves
mid-deploy cannot mix two images) by the same per-host engine as `ghdeploy deploy`, over the local
transport, under the same host lock. A digest that was rolled back here (or, with a fleet table,
anywhere: agent_fleet.py) is not tried again: the agent waits for the tag to point somewhere new
(agent_outcome.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ghdeploy import __version__, agent_status, hostops, locks, registry
from ghdeploy import remote_commands as rc
from ghdeploy.commands.agent_fleet import FleetSlot
from ghdeploy.commands.agent_outcome import (
    ACTIONS,
    BROKEN_RESULTS,
    PollOutcome,
    broken_here,
    interrupted,
    now_iso,
    running_digests,
    short,
)
from ghdeploy.commands.agent_token import TokenSource
from ghdeploy.commands.common import operation
from ghdeploy.config import Config
from ghdeploy.engine import guardian
from ghdeploy.engine.fleet import layout_of
from ghdeploy.engine.host import HostResult, Operation, Target, ensure_image, run_host
from ghdeploy.errors import ExitCode, GhdeployError
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy.aws.fleet_table import FleetTable, Lease
    from ghdeploy.registry import RegistryAuth
    from ghdeploy.transports.base import Remote

# Tests and callers reach these through this module, as before the split.
__all__ = ["Agent", "PollOutcome", "TokenSource", "broken_here", "build_agent", "init_table"]

HISTORY_SCAN = 200  # history records read to find a digest that failed here


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
            return interrupted(out)
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

    def _fleet(self) -> FleetSlot | None:
        """The fleet table's slots for this poll (read per poll: the table may be set after start)."""
        if self.table is None:
            return None
        return FleetSlot(
            self.table,
            self.conn.host.label,
            self.token,
            self.batch,
            self.tag,
            self.cancel,
            self.reporter,
            lambda: self.write_status("waiting for a fleet slot"),
        )

    def _fleet_slot(
        self, digest: str, out: PollOutcome, prepare: Callable[[], None]
    ) -> AbstractContextManager[Lease | None]:
        """With a fleet table: skip a digest that failed anywhere, else hold a switch slot meanwhile."""
        fleet = self._fleet()
        return fleet.hold(digest, out, prepare) if fleet is not None else contextlib.nullcontext(None)

    def _renewing(self, lease: Lease | None) -> AbstractContextManager[None]:
        fleet = self._fleet()
        return fleet.renewing(lease) if fleet is not None and lease is not None else contextlib.nullcontext()

    def _deploy(self, out: PollOutcome, auth: RegistryAuth, digest: str, lease: Lease | None) -> PollOutcome:
        if self.cancel.is_set():
            return interrupted(out)
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
        guard: guardian.Guard | None = guardian.Guard(self.conn, self.layout, str(info.id))
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
                elif not (guard.finish() if guard is not None else locks.release(self.conn, self.layout, info.id)):
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
            interrupted(out)
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
