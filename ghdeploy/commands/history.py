"""`ghdeploy history`: the deploy and rollback records kept on each host."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions, layout_of
from ghdeploy.progress import Reporter
from ghdeploy.transports.base import Remote


@dataclass
class HostHistory:
    host: str
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # lines of the file that are not records

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "records": self.records, "error": self.error, "warnings": self.warnings}


def _host_history(conn: Remote, layout: rc.RemoteLayout, limit: int, reporter: Reporter) -> HostHistory:
    warnings: list[str] = []
    records = hostops.read_history(conn, layout, limit, warnings)
    for warning in warnings:
        reporter.warn(warning)
    return HostHistory(host=conn.host.label, records=records, warnings=warnings)


def history(config: Config, opts: HostOptions, reporter: Reporter, limit: int) -> list[HostHistory]:
    layout = layout_of(config)
    return per_host(
        config,
        opts,
        reporter,
        lambda conn: _host_history(conn, layout, limit, reporter),
        lambda label, exc: HostHistory(host=label, error=str(exc)),
    )
