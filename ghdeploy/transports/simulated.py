"""The dry run's host: answers like the real one would during a deploy, and changes nothing.

`SimulatedHost` is the backend of the dry run's RecordingRemote (engine/plan.py): what it is
asked is recorded, so the plan is the real per-host sequence and never a hand-kept copy of it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ghdeploy import remote_commands as rc
from ghdeploy.snapshot import app_containers, local_image
from ghdeploy.transports.base import CommandResult, Remote, checked
from ghdeploy.transports.recording import _CREATE, _DROP, _READ_SCRIPTS, _RESTORE, _script_of

if TYPE_CHECKING:
    from ghdeploy.docker_api import DockerAPI
    from ghdeploy.transports import http11

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
            # Read the way a real run reads them (the engine's API, else the docker CLI).
            self._containers = app_containers(self.real, self.layout)
        return self._containers

    def image(self, ref: str) -> dict[str, Any] | None:
        if ref not in self._images:
            info = local_image(self.real, ref)
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
        """The engine's API when the real host offers it (so the plan shows the reads a real run
        makes), answered from the model; None when the real run would use the docker CLI."""
        from ghdeploy.docker_api import DockerAPI
        from ghdeploy.transports.http11 import Client

        real = self.real.docker_api(timeout, probe)
        if real is None:
            return None
        return DockerAPI(Client(handler=self._engine, timeout=timeout), real.socket)

    def _engine(self, request: http11.Request) -> http11.Response:
        """The Engine API's GETs, answered from the model as dockerd would (404: not there)."""
        from ghdeploy.transports.http11 import Response

        parts = request.path.strip("/").split("/")
        found: Any = None
        if request.target == "/containers/json?all=1":
            found = [
                {"Id": c.get("Id"), "Labels": (c.get("Config") or {}).get("Labels") or {}} for c in self.containers()
            ]
        elif parts[0] == "containers" and len(parts) == 3:
            found = next((c for c in self.containers() if c.get("Id") == unquote(parts[1])), None)
        elif parts[0] == "images" and len(parts) >= 3:
            found = self.image(unquote("/".join(parts[1:-1])))
        if found is None:
            return Response(404, b'{"message": "No such object"}')
        return Response(200, json.dumps(found).encode())

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
