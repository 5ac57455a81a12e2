"""The recording transport: every command and HTTP request sent to a host, kept as data.

`RecordingRemote` wraps any other transport and records what passes through it, in order: over
a real SSH connection it is the `-v` trace of a deploy; over a `SimulatedHost` (scripted answers
that start from what the real host answers to read-only questions) it is the dry run, which is
therefore the real per-host sequence and never a hand-kept copy of it.

What went on stdin is never recorded, only that something did: it carries secrets (the ECR
token, a worker's environment).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.transports.base import CommandResult, Remote, checked

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
        """The backend's Docker Engine API, its requests recorded as "GET docker.sock /path"."""
        api = self.backend.docker_api(timeout, probe)
        if api is not None:

            def record(request: http11.Request) -> None:
                text = f"{request.method} {api.socket} {request.target}"
                self._record(Recorded("http", text, changes=request.method not in ("GET", "HEAD")))

            api.client.on_request.append(record)
        return api

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        # What else the transport offers (alive, reconnect: the engine's lost-link handling) is
        # the backend's own.
        return getattr(self.backend, name)


# --- scripted answers -------------------------------------------------------------------------

PULLED_ID = "sha256:NEW-IMAGE-ID"  # the ID of an image not pulled yet is unknown: the plan shows this
_SERVICE_LABEL = "com.docker.compose.service"


class SimulatedHost:
    """A docker host that answers like the real one would during a deploy, and changes nothing.

    Questions that only read (what runs, which images are present, a record file, a worker's
    /worker/health before the switch) go to the real host, read-only. Everything that would
    change it (pull, stop, up, run, write) is answered with success and applied to a small
    model of the containers, so that later reads see what a real run would see: the pulled
    image present, the app running on it, healthy.
    """

    def __init__(self, real: Remote, layout: rc.RemoteLayout, pulled: dict[str, str | None]) -> None:
        self.real = real
        self.host = real.host
        self.layout = layout
        self.pulled_digests = pulled  # ref -> the registry digest a pull of it brings
        self._containers: list[dict[str, Any]] | None = None
        self._images: dict[str, dict[str, Any] | None] = {}
        self._files: dict[str, str | None] = {}
        self._drained: set[int] = set()
        self._switched = False
        self._http: http11.Client | None = None

    # the model

    def containers(self) -> list[dict[str, Any]]:
        if self._containers is None:
            result = self.real.run(rc.inspect_app_containers(self.layout), timeout=60)
            try:
                data = json.loads(result.stdout or "[]")
            except ValueError:
                data = []
            self._containers = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
        return self._containers

    def image(self, ref: str) -> dict[str, Any] | None:
        if ref not in self._images:
            info: dict[str, Any] | None = None
            result = self.real.run(rc.image_inspect([ref]))
            with contextlib.suppress(ValueError):
                data = json.loads(result.stdout or "[]")
                info = data[0] if result.rc == 0 and isinstance(data, list) and data else None
            self._images[ref] = info
            if info is not None:
                self._images.setdefault(str(info.get("Id")), info)
        return self._images[ref]

    def _pull(self, ref: str) -> None:
        digest = self.pulled_digests.get(ref)
        name = ref.split("@", 1)[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        info = {"Id": PULLED_ID, "RepoDigests": [f"{name}@{digest}"] if digest else [], "RepoTags": [ref]}
        self._images[ref] = info

    def _image_id(self, ref: str) -> str:
        info = self.image(ref)
        return str(info["Id"]) if info else ref

    def _compose_up(self, ref: str) -> None:
        services = [c for c in self.containers() if ((c.get("Config") or {}).get("Labels") or {}).get(_SERVICE_LABEL)]
        if not services:  # nothing ran yet: compose creates the app's services
            for name in ("api", "worker"):
                services.append({"Id": f"simulated-{name}", "Config": {"Labels": {_SERVICE_LABEL: name}}})
                self.containers().append(services[-1])
        for container in services:
            self._start(container, ref)
        self._switched = True

    def _start(self, container: dict[str, Any], ref: str) -> None:
        container["Image"] = self._image_id(ref)
        container.setdefault("Config", {})["Image"] = ref
        container["State"] = {"Status": "running", "Running": True}
        container["RestartCount"] = 0

    def _targeted(self, name: str) -> dict[str, Any] | None:
        for container in self.containers():
            if (container.get("Name") or "").lstrip("/") == name:
                return container
        return None

    # the transport

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        ok = CommandResult(0, "", "")
        if argv == rc.inspect_app_containers(self.layout):
            return CommandResult(0, json.dumps(self.containers()), "")
        if argv[:3] == ["docker", "image", "inspect"]:
            found = [info for info in (self.image(ref) for ref in argv[3:]) if info is not None]
            return CommandResult(0 if len(found) == len(argv) - 3 else 1, json.dumps(found), "")
        if argv[-3:] == ["config", "--format", "json"] or argv[:2] == ["docker", "ps"]:
            return self.real.run(argv, timeout=60)  # the compose file's services; every container
        if argv[:3] == ["docker", "container", "inspect"]:
            found = [c for c in (self._targeted(name) for name in argv[4:]) if c is not None]
            return CommandResult(0 if len(found) == len(argv) - 4 else 1, json.dumps(found), "")
        if argv[:2] == ["docker", "start"]:
            container = self._targeted(argv[-1])
            if container is not None:
                container["State"] = {"Status": "running", "Running": True}
            return ok
        if argv[:2] == ["sh", "-c"] and argv[2] in (_CREATE, _RESTORE, _DROP):
            return self._replace(argv)
        if "compose" in argv and argv[argv.index("compose") - 1] == "docker":
            self._compose(argv)
            return ok
        if argv[:2] == ["docker", "stop"]:
            container = self._targeted(argv[-1])
            if container is not None:
                container["State"] = {"Status": "exited", "Running": False}
            return ok
        if argv[:2] == ["sh", "-c"] and len(argv) > 4:
            return self._script(argv, stdin)
        return ok

    def _compose(self, argv: list[str]) -> None:
        ref = next((a.split("=", 1)[1] for a in argv if a.startswith("ECR_IMAGE=")), "")
        at = argv.index("compose")
        sub = argv[at + 3] if len(argv) > at + 3 else ""
        if sub == "pull":
            self._pull(ref)
        elif sub == "up":
            self._compose_up(ref)

    def _script(self, argv: list[str], stdin: bytes | None) -> CommandResult:
        script, args = argv[2], argv[4:]
        text = (stdin or b"").decode(errors="replace")
        if script == _script_of(rc.read_file("/x/f")):
            path = args[0]
            if path in self._files:
                return CommandResult(0, self._files[path] or "", "")
            return self.real.run(argv, timeout=30)
        if script == _script_of(rc.write_file("/x", "/x/f")):
            self._files[args[1]] = text
        elif script == _script_of(rc.append_file("/x", "/x/f")):
            self._files[args[1]] = (self._files.get(args[1]) or "") + text
        elif script in _READ_SCRIPTS:
            return self.real.run(argv, timeout=60)
        return CommandResult(0, "", "")

    def _replace(self, argv: list[str]) -> CommandResult:
        """A targeted worker renamed to its backup and created anew; put back; its backup dropped."""
        script, args = argv[2], argv[4:]
        if script == _CREATE:
            name, backup, create = args[1], args[2], args[5:]
            old = self._targeted(name)
            if old is None:
                return CommandResult(1, "", f"No such container: {name}")
            old["Name"] = f"/{backup}"
            image = create[create.index("--") + 1]
            new = self._created(old, name, image, create)
            self.containers().append(new)
        elif script == _RESTORE:
            name, backup = args[0], args[1]
            backup_container = self._targeted(backup)
            if backup_container is not None:
                self.containers()[:] = [c for c in self.containers() if (c.get("Name") or "").lstrip("/") != name]
                backup_container["Name"] = f"/{name}"
        elif script == _DROP:
            self.containers()[:] = [c for c in self.containers() if (c.get("Name") or "").lstrip("/") != args[0]]
        return CommandResult(0, "", "")

    def _created(self, old: dict[str, Any], name: str, image: str, create: list[str]) -> dict[str, Any]:
        """What `docker create` makes of the old container's settings on the new image (env and
        labels: the image's own plus those carried over; the command as given)."""
        info = self.image(image) or {}
        image_config = info.get("Config") or {}
        carried_env = [e for e in (old.get("Config") or {}).get("Env") or [] if "=" in e]
        old_image = self.image(str(old.get("Image") or "")) or {}
        old_image_env = set((old_image.get("Config") or {}).get("Env") or [])
        new = json.loads(json.dumps(old))
        config = new.setdefault("Config", {})
        config["Env"] = [*(image_config.get("Env") or []), *(e for e in carried_env if e not in old_image_env)]
        config["Labels"] = {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})}
        after = create[create.index("--") + 2 :]
        entrypoint = next((o.split("=", 1)[1] for o in create if o.startswith("--entrypoint=")), None)
        if entrypoint is not None:
            config["Entrypoint"] = [entrypoint] if entrypoint else None
            config["Cmd"] = after
        else:
            config["Entrypoint"] = image_config.get("Entrypoint")
            config["Cmd"] = after or image_config.get("Cmd")
        new["Id"] = f"simulated-{name}"
        new["Name"] = f"/{name}"
        self._start(new, image)
        new["State"] = {"Status": "created", "Running": False}
        return new

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return checked(self.host.label, argv, self.run(argv, stdin=stdin, timeout=timeout))

    def http_client(self, timeout: float = 5.0) -> http11.Client:
        from ghdeploy.transports.http11 import Client

        return Client(handler=self._answer, timeout=timeout)

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        """None: the simulation answers the docker CLI's commands (the plan shows them)."""
        return None

    def _answer(self, request: http11.Request) -> http11.Response:
        from ghdeploy.transports.http11 import Response

        port, path = request.port, request.path
        if request.method == "POST" and path == "/worker/drain":
            self._drained.add(port)
            return Response(202, b'{"draining": true}')
        if path == "/worker/health" and not self._switched and port not in self._drained:
            return self._real_get(request)
        if path == "/worker/health":
            return Response(200, b'{"deploy_safe": true, "active_jobs": 0}')
        if path == "/health" and not self._switched:
            return self._real_get(request)
        return Response(200, b'{"status": "ok"}')

    def _real_get(self, request: http11.Request) -> http11.Response:
        from ghdeploy.transports.http11 import ConnectError, HTTPError

        if self._http is None:
            self._http = self.real.http_client(timeout=5.0)
        try:
            return self._http.get(request.url)
        except HTTPError as exc:
            raise ConnectError(str(exc)) from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
