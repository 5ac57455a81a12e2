"""The project's errors and exit codes.

Every error a user can cause or fix is a GhdeployError: a one-line message plus a hint that
says what to do. The CLI catches GhdeployError at one boundary and prints it; anything else
is a bug and gets a traceback.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the operation ran and failed: deploy rolled back, verify mismatch, host unhealthy
    BAD_INPUT = 2  # bad input or config; nothing was touched
    LOCKED = 3  # another deploy holds a host's lock; nothing was touched, try again later
    INTERRUPTED = 130  # SIGINT/SIGTERM


class GhdeployError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class BadInput(GhdeployError):
    """Found before anything was touched: the user fixes it and runs again (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(BadInput):
    """Bad configuration or input, found before anything was touched."""

    def __init__(self, problems: list[str] | str, hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems), hint)


class UsageError(BadInput):
    """The command line itself is wrong (unknown option, bad value): what --json reports for it."""


class PreflightError(BadInput):
    """A check before any host was touched failed (missing tag, bad host key, unreachable host)."""


class LocalToolError(BadInput):
    """A local prerequisite (docker engine, git repo) is missing."""


class OperationFailed(GhdeployError):
    """The operation ran and failed (exit 1, GhdeployError's own code)."""


class RegistryError(GhdeployError):
    """The registry or AWS answered with an error, or could not be reached."""


class CredentialsError(RegistryError):
    """No, expired or rejected AWS credentials: found before anything was touched, so a preflight failure."""

    exit_code = ExitCode.BAD_INPUT


class SSHError(GhdeployError):
    """Could not connect to or authenticate with a host, or a remote command failed to run."""

    def __init__(self, host: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}", hint)
        self.host = host


class HostKeyError(SSHError):
    """Unknown or changed host key: never accepted silently."""

    exit_code = ExitCode.BAD_INPUT


class RemoteCommandError(GhdeployError):
    """A command on a host exited non-zero (transports' check())."""

    def __init__(self, host: str, command: str, rc: int, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-5:]
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(f"{host}: `{command}` exited {rc}{detail}")
        self.host = host
        self.command = command
        self.rc = rc
        self.stderr = stderr


class Interrupted(GhdeployError):
    exit_code = ExitCode.INTERRUPTED


def problem_kind(exc: GhdeployError) -> str:
    """A host's connection failure in a word or two, for a table cell."""
    text = exc.message
    if isinstance(exc, HostKeyError):
        return "host key CHANGED" if "CHANGED" in text else "unknown host key"
    if "authentication failed" in text or "public-key login" in text:
        return "login refused"
    if "key file" in text:
        return "bad key file"
    return "unreachable"
