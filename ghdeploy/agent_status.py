"""The agent's heartbeat file on a host: written by `ghdeploy agent`, read by `ghdeploy status`.

`GHOSTHANDS_DIR/.ghdeploy/agent.json` says which tag the agent follows, when it last polled,
what that poll did, and by when the next heartbeat is due (`expect_by`). A reader calls the agent
running while that time has not passed; an agent killed without a goodbye (SIGKILL, the host
rebooted) is then shown as not responding instead of running forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ghdeploy import remote_commands as rc
from ghdeploy.records import TIME_FORMAT

FILENAME = "agent.json"
SCHEMA = 1


def path(layout: rc.RemoteLayout) -> str:
    return f"{layout.state_dir}/{FILENAME}"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime(TIME_FORMAT)


def parse(when: Any) -> datetime | None:
    if not isinstance(when, str):
        return None
    try:
        return datetime.strptime(when, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def summary(record: dict[str, Any] | None, now: datetime | None = None) -> dict[str, Any] | None:
    """What `status` shows: None when no agent ever ran on the host."""
    if not record:
        return None
    now = now or datetime.now(UTC)
    state = str(record.get("state") or "unknown")
    expect_by = parse(record.get("expect_by"))
    if state == "stopped":
        running = False
        condition = "stopped"
    elif expect_by is not None and now <= expect_by:
        running = True
        condition = state
    else:
        running = False
        condition = "not responding"
    last = record.get("last_result") if isinstance(record.get("last_result"), dict) else None
    return {
        "running": running,
        "state": condition,
        "tag": record.get("tag"),
        "interval": record.get("interval"),
        "fleet_table": record.get("fleet_table"),
        "pid": record.get("pid"),
        "started": record.get("started"),
        "heartbeat": record.get("heartbeat"),
        "last_poll": record.get("last_poll"),
        "last_result": last,
    }
