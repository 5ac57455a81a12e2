"""The recording transport: every command and HTTP request sent to a host, kept as data.

`RecordingRemote` wraps any other transport and records what passes through it, in order: over
a real SSH connection it is the `-v` trace of a deploy; over a `SimulatedHost` (scripted answers
that start from what the real host answers to read-only questions) it is the dry run, which is
therefore the real per-host sequence and never a hand-kept copy of it.

What went on stdin is never recorded, only that something did: it carries secrets (the ECR
token, a worker's environment).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.transports.base import CommandResult, Remote

if TYPE_CHECKING:
    from ghdeploy.docker_api import DockerAPI
    from ghdeploy.hosts import Host
    from ghdeploy.transports import http11

STDIN_NOTE = "   # stdin: not shown"


@dataclass(frozen=True)
class Recorded:
    """One command run on the host, or one HTTP request to a port on its localhost."""

    kind: str  # "run" | "http"
    text: str  # the argv joined with shlex.join, or "GET localhost:3100/health"
    stdin: bool = False  # data went on stdin (its content is never kept)
    changes: bool = True  # False for what only reads (inspect, cat, GET)

    @property
    def shown(self) -> str:
        return self.text + (STDIN_NOTE if self.stdin else "")

    @property
    def line(self) -> str:
        """As `-v` prints it: commands after a `$`, requests as they are."""
        return f"$ {self.shown}" if self.kind == "run" else self.shown

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.text, "stdin": self.stdin, "changes": self.changes}


def read_only(argv: list[str]) -> bool:
    """Whether a command only reads (the ones the engine uses to look at a host)."""
    if argv[:3] in (["docker", "image", "inspect"], ["docker", "container", "inspect"]):
        return True
    if argv[:2] == ["docker", "ps"] or argv[-3:] == ["config", "--format", "json"]:
        return True
    if len(argv) < 3 or argv[:2] != ["sh", "-c"]:
        return False
    return argv[2] in _READ_SCRIPTS


def _script_of(argv: list[str]) -> str:
    return argv[2]


_LAYOUT = rc.RemoteLayout(app_dir="/x", compose_file="/x/c.yml")
_READ_SCRIPTS = {
    _script_of(rc.inspect_app_containers(_LAYOUT)),
    _script_of(rc.read_file("/x/f")),
    _script_of(rc.tail_file("/x/f", 1)),
    _script_of(rc.read_lock(_LAYOUT)),
    _script_of(rc.preflight(_LAYOUT)),
}
_CREATE = _script_of(rc.create_container(_LAYOUT, ContainerSpec(name="n", options=[], env=[]), "i", True))
_RESTORE = _script_of(rc.restore_container("n", True))
_DROP = _script_of(rc.drop_backup("n"))


def collapse_polls(entries: list[Recorded], longest: int = 4) -> list[Recorded]:
    """The entries without the repeats of poll loops: how often /health is asked before it
    answers 200 is not part of a plan.

    A block of up to `longest` entries seen twice in a row counts once. Within a run of HTTP
    requests (workers drained at once, each in its own thread, interleave at random), each
    distinct request counts once, ordered by port and then by when it was first made.
    """
    out: list[Recorded] = []
    for entry in entries:
        out.append(entry)
        for k in range(1, longest + 1):
            if len(out) >= 2 * k and out[-k:] == out[-2 * k : -k]:
                del out[-k:]
                break
    return _tidy_requests(out)


def _port(entry: Recorded) -> int:
    """The port an HTTP entry went to; 0 for the Docker API's socket ("GET /var/run/docker.sock /x")."""
    host_port = entry.text.split(" ", 2)[1].split("/", 1)[0]
    port = host_port.rsplit(":", 1)[1] if ":" in host_port else ""
    return int(port) if port.isdigit() else 0


def _tidy_requests(entries: list[Recorded]) -> list[Recorded]:
    out: list[Recorded] = []
    run: list[Recorded] = []
    for entry in [*entries, None]:
        if entry is not None and entry.kind == "http":
            if entry not in run:
                run.append(entry)
            continue
        out += sorted(run, key=_port)  # sorted() is stable: each port's own order stays
        run = []
        if entry is not None:
            out.append(entry)
    return out


class RecordingRemote:
    """A transport that records everything it is asked to do, then has `backend` do it."""

    def __init__(self, backend: Remote, on_record: Callable[[Recorded], None] | None = None) -> None:
        self.backend = backend
        self.host: Host = backend.host
        self.on_record = on_record
        self.recorded: list[Recorded] = []
        self._lock = threading.Lock()

    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self.recorded.append(entry)
        if self.on_record is not None:
            self.on_record(entry)

    def _record_run(self, argv: list[str], stdin: bytes | None) -> None:
        self._record(Recorded("run", rc.render(argv), stdin=stdin is not None, changes=not read_only(argv)))

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        self._record_run(argv, stdin)
        return self.backend.run(argv, stdin=stdin, timeout=timeout)

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        self._record_run(argv, stdin)
        return self.backend.check(argv, stdin=stdin, timeout=timeout)

    def http_client(self, timeout: float = 5.0) -> http11.Client:
        client = self.backend.http_client(timeout)

        def record(request: http11.Request) -> None:
            text = f"{request.method} {request.host}:{request.port}{request.path}"
            self._record(Recorded("http", text, changes=request.method not in ("GET", "HEAD")))

        client.on_request.append(record)
        return client

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        """The backend's Docker Engine API, each read recorded as "GET SOCKET /path" (see
        DockerAPI.on_read: containers inspected at once are one entry, not one per ID)."""
        api = self.backend.docker_api(timeout, probe)
        if api is not None:
            api.on_read.append(lambda text: self._record(Recorded("http", text, changes=False)))
        return api

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        # What else the transport offers (alive, reconnect: the engine's lost-link handling) is
        # the backend's own.
        return getattr(self.backend, name)
