"""Everything the operator sees: progress on stderr, results on stdout (tables or one JSON document).

Core modules never print; they return data and call a Reporter. This module is the one place
that knows about rich. Progress is a live per-host display on a TTY, plain lines otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ghdeploy import __version__

JSON_SCHEMA_VERSION = 1


class ConsoleReporter:
    """A Reporter that draws on stderr. Use as a context manager around the work."""

    def __init__(self, *, verbose: int = 0, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.verbose = verbose
        self.quiet = quiet
        self.live_mode = self.console.is_terminal and not quiet
        self._steps: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live: Any = None
        self._started = time.monotonic()

    def __enter__(self) -> ConsoleReporter:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self, console=self.console, transient=True, refresh_per_second=10)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self) -> Group:
        with self._lock:
            items = list(self._steps.items())
        rows = []
        for host, message in items:
            label = f"{host}: " if host else ""
            rows.append(Spinner("dots", text=Text(f"{label}{message}")))
        return Group(*rows)

    def _plain(self, text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:6.1f}s"

    def step(self, host: str | None, message: str) -> None:
        key = host or ""
        with self._lock:
            if self._steps.get(key) == message:
                return
            self._steps[key] = message
        if self.quiet:
            return
        if not self.live_mode:
            label = f"{host}: " if host else ""
            self._plain(f"[{self._elapsed()}] {label}{message}")

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self.live_mode:
            self.console.print(escape(message))
        else:
            self._plain(f"[{self._elapsed()}] {message}")

    def warn(self, message: str) -> None:
        if self.live_mode:
            self.console.print(f"[yellow]warning:[/yellow] {escape(message)}")
        else:
            self._plain(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            if self.live_mode:
                self.console.print(f"[dim]{escape(message)}[/dim]")
            else:
                self._plain(f"  {message}")


def print_error(message: str, hint: str | None) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(f"[bold red]error:[/bold red] {escape(message)}")
    if hint:
        console.print(f"[cyan]hint:[/cyan] {escape(hint)}")


def emit_json(command: str, payload: dict[str, Any]) -> None:
    """The single JSON document on stdout: `version` (schema), `ghdeploy`, `command`, then the payload."""
    doc = {"version": JSON_SCHEMA_VERSION, "ghdeploy": __version__, "command": command, **payload}
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def out() -> Console:
    return Console(highlight=False)


def table(title: str | None, columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    return t
