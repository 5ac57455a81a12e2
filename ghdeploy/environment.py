"""What one run of the CLI talks to (streams, terminal, colour, clock, environment variables) and
the global options it was given: made once per invocation and passed down, as httpie's Environment.

Commands and renderers read this instead of sys.stdout, os.environ or a module-level state, so a
test builds one with captured streams. Standard library only: `ghdeploy --help` loads it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


def _stdin() -> TextIO:
    return sys.stdin


def _stdout() -> TextIO:
    return sys.stdout


def _stderr() -> TextIO:
    return sys.stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object
        return False


@dataclass
class Environment:
    stdin: TextIO = field(default_factory=_stdin)
    stdout: TextIO = field(default_factory=_stdout)
    stderr: TextIO = field(default_factory=_stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], float] = time.monotonic  # elapsed times in progress lines
    # The global options (`--env-file`, `--json`, `-v`, `-q`), set by the top-level callback.
    env_file: Path | None = None
    json: bool = False
    verbose: int = 0
    quiet: bool = False

    @property
    def stdin_isatty(self) -> bool:
        return _isatty(self.stdin)

    @property
    def stdout_isatty(self) -> bool:
        return _isatty(self.stdout)

    @property
    def stderr_isatty(self) -> bool:
        return _isatty(self.stderr)

    @property
    def no_color(self) -> bool:
        """NO_COLOR (https://no-color.org: set and not empty) or TERM=dumb: no colour anywhere."""
        return bool(self.environ.get("NO_COLOR")) or self.environ.get("TERM") == "dumb"

    def colour(self, stream: TextIO) -> bool:
        """Whether text written to `stream` may carry ANSI colour: a terminal, and colour not turned off."""
        return _isatty(stream) and not self.no_color
