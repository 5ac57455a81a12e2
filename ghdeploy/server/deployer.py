"""A queued webhook becomes `ghdeploy deploy --deploy-only --tag T`, in-process, on the same engine.

Preflight, host locks, the rolling fleet, drain, health and exact rollback are the CLI's; this
module only names the operator (`webhook:<receiver host>`), writes the message (commit message
and run URL) and turns the fleet result into the record's status.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import GhdeployError
from ghdeploy.server.queue import Outcome
from ghdeploy.waiting import CancelToken

if TYPE_CHECKING:
    from ghdeploy.config import Config

MESSAGE_LIMIT = 500


def operator_name() -> str:
    return f"webhook:{socket.gethostname()}"


def message_for(record: dict[str, Any]) -> str:
    """The commit's subject line and the CI run: what the lock and the host history show."""
    lines = (record.get("commit_message") or "").strip().splitlines()
    subject = lines[0].strip() if lines else ""
    if len(subject) > MESSAGE_LIMIT:
        subject = subject[: MESSAGE_LIMIT - 3] + "..."
    run_url = (record.get("run_url") or "").strip()
    parts = [p for p in (subject, run_url) if p]
    return " ".join(parts) if parts else f"webhook deploy #{record['id']}"


def status_of(fleet: Any) -> str:
    """The record's status from a FleetResult."""
    if fleet is None:
        return "failed"
    if fleet.succeeded:
        return "succeeded"
    if fleet.interrupted:
        return "interrupted"
    results = {h.result for h in fleet.hosts}
    if "rolled back" in results and not results & {"rollback failed", "failed"}:
        return "rolled back"
    return "failed"


def fleet_deploy(config: Config, cwd: Path) -> Any:
    """The Deployer the queue calls for each claimed record."""

    def run(record: dict[str, Any], reporter: Any, cancel: CancelToken) -> Outcome:
        from ghdeploy.commands.deploy import deploy

        try:
            report = deploy(
                config,
                cwd,
                reporter,
                cancel,
                tag=record["image_tag"],
                mode="deploy-only",
                message=message_for(record),
                operator=operator_name(),
                skip_current=True,
                tag_source="the webhook's image_tag",
            )
        except GhdeployError as exc:
            why = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
            return Outcome(status="interrupted" if cancel.is_set() else "failed", error=why)
        fleet = report.fleet
        hosts = fleet.to_dict()["hosts"] if fleet is not None else []
        status = status_of(fleet)
        error: str | None = None
        notes: list[str] = []
        if fleet is not None:
            failed = [h for h in fleet.hosts if h.error]
            if failed and status != "succeeded":
                error = "; ".join(f"{h.host}: {h.error}" for h in failed)
            if fleet.interrupted:
                notes.append("the receiver was stopped: the deploy ended at a safe point")
            notes += [n for h in fleet.hosts for n in h.notes if n.startswith("already runs")]
        return Outcome(status=status, hosts=hosts, error=error, notes=notes)

    return run
