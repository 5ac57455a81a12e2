"""Command-line interface: parse, load config, call one core function, render, return an exit code.

Only typer and the standard library are imported here; everything heavy (rich tables, boto3,
paramiko, httpx) is imported when a command runs, so `ghdeploy --help` starts fast.

  app.py        the typer apps and the global options (into the run's Environment, ctx.obj)
  options.py    every option several commands share, declared once
  runtime.py    config loading, the reporter, exit codes: what each command does around its call
  signals.py    SIGINT/SIGTERM as a cancel event
  cmd_*.py      the commands, by group (release, read, agent, ci, day2)
  argv.py       global options after the command; building only the command a line runs
  boundary.py   main(): the one place every error becomes an exit code
"""

from __future__ import annotations

# The command modules register their commands on `app` when imported: --help lists them in this order.
# isort: off
from ghdeploy.cli import cmd_release, cmd_read, cmd_ci, cmd_day2, cmd_agent  # noqa: F401

# isort: on
from ghdeploy.cli.app import app
from ghdeploy.cli.argv import GLOBAL_OPTIONS_HELP, hoist_global_flags, value_options
from ghdeploy.cli.argv import click_command as _click_command
from ghdeploy.cli.boundary import main, run

__all__ = ["GLOBAL_OPTIONS_HELP", "_click_command", "app", "hoist_global_flags", "main", "run", "value_options"]
