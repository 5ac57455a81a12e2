"""The agent's share of the fleet table: a switch slot (a lease) per deploy, and the digests the
fleet already found broken. Hosts pull at once; only the switches take turns, BATCH at a time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ghdeploy.commands.agent_outcome import PollOutcome, interrupted, short
from ghdeploy.errors import GhdeployError
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy.aws.fleet_table import FleetTable, Lease

# Fleet leases: short, renewed while the deploy runs; a dead host's slot frees itself in LEASE_TTL.
LEASE_TTL = 60.0
LEASE_RENEW = 15.0
LEASE_POLL = 2.0


@dataclass
class FleetSlot:
    """One host's view of the fleet table for one poll."""

    table: FleetTable
    host: str  # this host's label: the lease holder and the host named in a failure mark
    token: str  # this process's identity in the leases
    batch: int
    tag: str
    cancel: threading.Event
    reporter: Reporter
    waiting: Callable[[], None]  # called on each turn spent waiting for a slot (the heartbeat)

    @contextlib.contextmanager
    def hold(self, digest: str, out: PollOutcome, prepare: Callable[[], None]) -> Iterator[Lease | None]:
        """Skip a digest that failed anywhere (`out` says so), else `prepare`, then hold a switch slot."""
        if self.failed(digest, out):
            yield None
            return
        prepare()
        lease = self._wait_for_lease(digest)
        if lease is None:
            interrupted(out)
            yield None
            return
        try:
            # Checked again with the slot held: the host before us may have failed it meanwhile.
            self.failed(digest, out)
            yield lease
        finally:
            try:
                self.table.release(lease)
            except GhdeployError as exc:
                self.reporter.warn(f"could not release the fleet lease (it expires in {LEASE_TTL:g}s): {exc}")

    def failed(self, digest: str, out: PollOutcome) -> bool:
        """Whether another host marked `digest` failed; if so `out` becomes a skip that says where."""
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
        shown = ""
        while not self.cancel.is_set():
            lease = self.table.acquire(self.host, self.token, digest, self.batch, LEASE_TTL)
            if lease is not None:
                return lease
            holders = self.table.holders(self.batch)
            who = ", ".join(str(h.get("holder")) for h in holders) or "another host"
            if who != shown:
                self.reporter.info(f"waiting for a fleet slot ({self.batch} at a time): {who} is switching")
                shown = who
            self.waiting()
            self.cancel.wait(LEASE_POLL)
        return None

    @contextlib.contextmanager
    def renewing(self, lease: Lease) -> Iterator[None]:
        """Keep `lease` alive from a thread while the deploy under it runs."""
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
