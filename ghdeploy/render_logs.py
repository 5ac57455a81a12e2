"""How `ghdeploy logs` prints: `host  service | line`, aligned, coloured per host on a terminal.

Kept apart from render.py on purpose: it needs no rich (whose import costs ~100 ms), and the
first log line of an incident should appear as soon as the host sends it.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TextIO

from ghdeploy.environment import Environment
from ghdeploy.logmerge import LogLine

# Bright, distinct foreground colours; hosts take them in order.
_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92")


class LogPrinter:
    """A LogSink (commands.logs) and a Reporter for the command's few progress messages.

    Streams, --json, -v and -q come from `env` (the run's); tests may give any of them instead.
    """

    def __init__(
        self,
        hosts: list[str],
        *,
        env: Environment | None = None,
        as_json: bool | None = None,
        timestamps: bool = False,
        follow: bool = False,
        verbose: int | None = None,
        quiet: bool | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        env = env or Environment()
        self.out = out or env.stdout
        self.err = err or env.stderr
        self.as_json = env.json if as_json is None else as_json
        self.timestamps = timestamps
        self.follow = follow
        self.verbose = env.verbose if verbose is None else verbose
        self.quiet = env.quiet if quiet is None else quiet
        self.colour = env.colour(self.out)
        self.host_width = max((len(h) for h in hosts), default=0)
        self.service_width = 6  # "worker"; grows when a longer name shows up
        self._colours = {host: _COLOURS[i % len(_COLOURS)] for i, host in enumerate(hosts)}
        self._lock = threading.Lock()
        self.closed = False  # stdout went away (e.g. `| head`)

    def format(self, line: LogLine) -> str:
        if self.as_json:
            return json.dumps(line.to_dict(), ensure_ascii=False)
        self.service_width = max(self.service_width, len(line.service))
        prefix = f"{line.host:<{self.host_width}} {line.service:<{self.service_width}} |"
        if self.colour:
            prefix = f"\x1b[{self._colours.get(line.host, '0')}m{prefix}\x1b[0m"
        stamp = f"{line.time} " if self.timestamps and line.time else ""
        return f"{prefix} {stamp}{line.text}"

    def line(self, line: LogLine) -> None:
        if self.closed:
            return
        try:
            self.out.write(self.format(line) + "\n")
            if self.follow:
                self.out.flush()  # a pipe (`| grep`) sees each line as it comes
        except BrokenPipeError:
            self._gone()

    def flush(self) -> None:
        if self.closed:
            return
        try:
            self.out.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        # The reader left: stop, and keep Python's own final flush from complaining.
        self.closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
        except (OSError, ValueError):
            pass

    def notice(self, message: str) -> None:
        self._err(f"logs: {message}")

    def _err(self, text: str) -> None:
        with self._lock:
            self.err.write(text + "\n")
            self.err.flush()

    # Reporter
    def step(self, host: str | None, message: str) -> None:
        if self.verbose:
            self._err(f"{host + ': ' if host else ''}{message}")

    def info(self, message: str) -> None:
        if not self.quiet:
            self._err(message)

    def warn(self, message: str) -> None:
        self._err(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            self._err(f"  {message}")
