"""What one poll of `ghdeploy agent` found and did, and which digests it must not try again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import records
from ghdeploy.engine.host import HostResult
from ghdeploy.errors import ExitCode

if TYPE_CHECKING:
    from ghdeploy.hostops import Snapshot

# Results that mean "this image is broken": remembered, never retried until the tag moves.
BROKEN_RESULTS = ("rolled back", "rollback failed")

ACTIONS = ("none", "deployed", "rolled back", "skipped", "failed", "rollback failed")


def now_iso() -> str:
    return records.now_iso()


def short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


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


def interrupted(outcome: PollOutcome) -> PollOutcome:
    """The poll stopped (a signal) before it changed anything."""
    outcome.action = "none"
    outcome.reason = "interrupted before anything changed"
    outcome.exit_code = int(ExitCode.INTERRUPTED)
    return outcome
