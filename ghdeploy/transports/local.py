"""The local transport: the per-host engine running ON the host (the agent).

Same interface as the SSH connection: `run` executes an argv list directly (subprocess, no
shell string, stdin for secrets, a timeout), `http_client` reaches the host's own loopback.
Nothing here listens on a port.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
from typing import TYPE_CHECKING

from ghdeploy.errors import GhdeployError
from ghdeploy.hosts import Host
from ghdeploy.transports.base import CommandResult, checked

if TYPE_CHECKING:
    from ghdeploy.docker_api import DockerAPI
    from ghdeploy.transports import http11

# Hosts an engine request may name: the app's ports on this machine's loopback, nothing else.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1"})


def this_host() -> Host:
    """The machine we run on, named as people know it (its hostname)."""
    return Host(hostname=socket.gethostname() or "localhost")


class LocalConnection:
    """Runs the engine's commands on this machine. Thread-safe: every call is its own process."""

    def __init__(self, host: Host | None = None, env: dict[str, str] | None = None) -> None:
        self.host = host or this_host()
        # None: the children inherit our environment (DOCKER_HOST, PATH) as a login shell would.
        self._env = env
        self._docker_api_off = False  # set when the engine's socket failed: the CLI is used

    def __repr__(self) -> str:
        return f"<LocalConnection {self.host.label}>"

    def __enter__(self) -> LocalConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to close: kept so callers treat every transport alike."""

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv (never through a shell string); stdin is written then closed.

        The child gets its own session: a SIGTERM/SIGINT meant for the agent (systemd, Ctrl-C)
        must not also kill a `docker compose up` half-way; the agent itself decides when to stop.
        """
        if not argv:
            raise ValueError("empty argv")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                start_new_session=True,
            )
        except FileNotFoundError:
            # What a shell would say: the engine reads rc 127 as "not installed".
            return CommandResult(rc=127, stdout="", stderr=f"{argv[0]}: command not found\n")
        except OSError as exc:
            raise GhdeployError(f"{self.host.label}: cannot start `{shlex.join(argv)}`: {exc}") from None
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise GhdeployError(
                f"{self.host.label}: `{shlex.join(argv)}` did not finish within {timeout:g} s (stopped it)",
                "check the docker engine on this host, or raise the timeout",
            ) from None
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt): do not leave the child behind.
            _kill_group(proc)
            raise
        return CommandResult(
            rc=proc.returncode,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
        )

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Like run, but a non-zero exit status raises RemoteCommandError."""
        return checked(self.host.label, argv, self.run(argv, stdin=stdin, timeout=timeout))

    def http_client(self, timeout: float = 5.0) -> http11.Client:
        """A client for http://localhost:PORT (sent to 127.0.0.1); any other host is refused.

        No proxy settings from the environment apply: an HTTP_PROXY meant for the registry must
        not swallow the health checks.
        """
        from ghdeploy.transports.http11 import Client

        return Client(_loopback_socket, timeout)

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        """The engine's API on the unix socket our docker CLI would use (see ghdeploy.docker_api),
        or None when the CLI would use something else, or the socket already failed once.
        `probe` is not needed: this process's own environment is the host's."""
        from ghdeploy import docker_api
        from ghdeploy.transports.http11 import Client

        if self._docker_api_off:
            return None
        env = os.environ if self._env is None else self._env
        config_dir = env.get("DOCKER_CONFIG") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")
        try:
            with open(os.path.join(config_dir, "config.json"), encoding="utf-8") as f:
                context = docker_api.current_context_line(f.read())
        except (OSError, UnicodeDecodeError):
            context = ""
        path = docker_api.socket_from(env.get("DOCKER_HOST", ""), env.get("DOCKER_CONTEXT", ""), context)
        if path is None:
            return None

        def off() -> None:
            self._docker_api_off = True

        return docker_api.DockerAPI(Client(_unix_socket(path), timeout), path, on_unavailable=off)


def _unix_socket(path: str) -> http11.Opener:
    """Streams to the unix socket at `path`, whatever host and port a URL names."""
    from ghdeploy.transports.http11 import ConnectError, ConnectTimeout

    def open_socket(host: str, port: int, timeout: float) -> http11.Stream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeout(f"connecting to {path} timed out") from exc
        except OSError as exc:
            sock.close()
            raise ConnectError(f"cannot connect to {path} ({exc.strerror or exc})") from exc
        return sock

    return open_socket


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=5)


def _loopback_socket(host: str, port: int, timeout: float) -> http11.Stream:
    """Pins `localhost` to 127.0.0.1 (never ::1 or a resolver's answer) and refuses other hosts."""
    from ghdeploy.transports.http11 import ConnectError, ConnectTimeout

    if host not in LOOPBACK_NAMES:
        raise ConnectError(f"the local transport only reaches http://localhost, not http://{host}")
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except TimeoutError as exc:
        raise ConnectTimeout(f"connecting to 127.0.0.1:{port} timed out") from exc
    except OSError as exc:
        raise ConnectError(f"cannot connect to 127.0.0.1:{port} ({exc.strerror or exc})") from exc
