"""`ghdeploy status`: what runs on every host, read at once."""

from __future__ import annotations

from ghdeploy.commands.common import per_host
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions, layout_of
from ghdeploy.progress import Reporter
from ghdeploy.status import HostStatus, host_status


def status(config: Config, opts: HostOptions, reporter: Reporter) -> list[HostStatus]:
    layout = layout_of(config)
    api, worker = config.number("GH_API_PORT"), config.number("GH_WORKER_PORT")
    return per_host(
        config,
        opts,
        reporter,
        lambda conn: host_status(conn, layout, api, worker),
        HostStatus.unreadable,
    )
