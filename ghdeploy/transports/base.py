"""The one transport interface the per-host engine runs over.

A transport runs an argv on the host (stdin and a timeout, never a secret on the command line)
and opens an HTTP client to a port on the host's own localhost; where it can, it also reaches
the host's Docker Engine API (reads that would otherwise start the docker CLI). The SSH connection
(ghdeploy.transports.ssh.Connection) is one implementation.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from ghdeploy.docker_api import DockerAPI
    from ghdeploy.hosts import Host
    from ghdeploy.transports.http11 import Client


class Closing:
    """`with thing:` closes it at the end, whatever happened: the transports' clients and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class Remote(Protocol):
    """What the engine needs of a host connection."""

    host: Host

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv (quoted with shlex.join on the host); return whatever it exited with."""
        ...

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Like run, but a non-zero exit raises RemoteCommandError."""
        ...

    def http_client(self, timeout: float = 5.0) -> Client:
        """An HTTP client whose requests to http://localhost:PORT reach that port on the host."""
        ...

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        """The host's Docker Engine API when this transport reaches its socket; None: use the
        docker CLI (which every transport can run). `probe`: what docker_api.probe_argv printed
        on the host, when the caller ran it already (status runs it with its other reads)."""
        ...


def checked(label: str, argv: list[str], result: CommandResult) -> CommandResult:
    """What every transport's check() does with run()'s result: a non-zero exit raises."""
    if result.rc != 0:
        from ghdeploy.errors import RemoteCommandError

        raise RemoteCommandError(label, shlex.join(argv), result.rc, result.stderr)
    return result


def require_ok(result: CommandResult, what: str, host: str) -> str:
    """A step's output, or OperationFailed naming the step and the host (the engine's way to stop)."""
    if result.rc != 0:
        from ghdeploy.errors import OperationFailed

        raise OperationFailed(f"{host}: {what} failed (exit {result.rc}): {result.stderr.strip()[-300:]}")
    return result.stdout
