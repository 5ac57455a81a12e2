"""`ghdeploy hosts`: the hosts the other commands would work on, in order. Connects to none."""

from __future__ import annotations

from ghdeploy.commands.common import resolve_hosts_with_notes
from ghdeploy.config import Config
from ghdeploy.engine.connect import HostOptions
from ghdeploy.hosts import Host
from ghdeploy.progress import Reporter


def hosts(config: Config, opts: HostOptions, reporter: Reporter) -> tuple[list[Host], list[str]]:
    """The resolved hosts and any notes about instances left out (ASG discovery)."""
    return resolve_hosts_with_notes(config, opts, reporter)
