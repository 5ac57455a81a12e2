"""How core code reports progress without printing.

Core modules take a Reporter and call it; the CLI supplies one that draws on stderr
(rich when a TTY, plain lines otherwise). Tests use NullReporter or a recording one.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step(self, host: str | None, message: str) -> None:
        """A new step started (shown as the host's current activity)."""

    def info(self, message: str) -> None:
        """A line worth keeping in the log."""

    def warn(self, message: str) -> None:
        """Something the operator should notice."""

    def debug(self, message: str) -> None:
        """Detail shown only with -v (e.g. the exact commands run)."""


class NullReporter:
    def step(self, host: str | None, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def debug(self, message: str) -> None:
        pass


class RecordingReporter:
    """Keeps every event; for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, str]] = []

    def step(self, host: str | None, message: str) -> None:
        self.events.append(("step", host, message))

    def info(self, message: str) -> None:
        self.events.append(("info", None, message))

    def warn(self, message: str) -> None:
        self.events.append(("warn", None, message))

    def debug(self, message: str) -> None:
        self.events.append(("debug", None, message))

    def messages(self, kind: str | None = None) -> list[str]:
        return [m for k, _, m in self.events if kind is None or k == kind]
