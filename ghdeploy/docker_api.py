"""The Docker Engine API on a host: the JSON `docker inspect` prints, without the docker CLI.

Why: reading what runs on a host through the CLI starts a shell, `docker ps`, awk, `docker
inspect` and `docker image inspect` on it, one after the other; the Go CLI's start-up is most
of the 60-100 ms that costs, on every `status` and every deploy, and on ten hosts sharing the
same CPUs it is what stops a fleet read from being flat. The engine answers the same questions
over its socket in a few ms each. `docker inspect` prints the API's own JSON, so what comes
back here is what the CLI would have printed.

The transport supplies the stream to the socket (over SSH a `direct-streamlocal` channel, see
transports/ssh/streamlocal.py; locally a unix socket). The socket must be the one the host's
docker CLI would use: `socket_from` reads DOCKER_HOST, DOCKER_CONTEXT and the CLI's current
context as the host sees them; when they point anywhere but a unix socket, there is no API
reader and the CLI is used, as it is whenever the API cannot be reached (APIUnavailable).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from ghdeploy.transports.http11 import Client

DEFAULT_SOCKET = "/var/run/docker.sock"
# Containers and images are read at once, a stream each; more than this at once is no faster.
_PARALLEL = 8


class APIUnavailable(Exception):
    """The engine's socket could not be used (refused, gone, an answer that is not the API's):
    read through the docker CLI instead."""


def probe_argv() -> list[str]:
    """Prints what decides the host CLI's engine: DOCKER_HOST, DOCKER_CONTEXT, and the
    `currentContext` entry of its config.json (only that entry: the file may hold registry
    credentials, which must not leave the host)."""
    script = (
        'printf "%s\\n%s\\n" "${DOCKER_HOST-}" "${DOCKER_CONTEXT-}"; '
        'c="${DOCKER_CONFIG:-$HOME/.docker}/config.json"; '
        'if test -f "$c"; then grep -o \'"currentContext"[^,}]*\' "$c"; fi; true'
    )
    return ["sh", "-c", script]


def socket_from(docker_host: str, docker_context: str, config_line: str) -> str | None:
    """The unix socket the host's docker CLI talks to, or None when it uses something only the
    CLI resolves (a context, tcp://, ssh://): then the CLI is used, never a guess."""
    if docker_host:
        if docker_host.startswith("unix://") and len(docker_host) > len("unix://"):
            return docker_host[len("unix://") :]
        return None
    if docker_context and docker_context != "default":
        return None
    if config_line:
        _, _, value = config_line.partition(":")
        if value.strip().strip('"') not in ("", "default"):
            return None
    return DEFAULT_SOCKET


def parse_probe(stdout: str) -> str | None:
    lines = [*stdout.split("\n"), "", "", ""]
    return socket_from(lines[0].strip(), lines[1].strip(), lines[2].strip())


def current_context_line(config_text: str) -> str:
    """What probe_argv's grep finds, from a config.json read locally (the local transport)."""
    try:
        value = json.loads(config_text).get("currentContext")
    except (ValueError, AttributeError):
        return ""
    return f'"currentContext":"{value}"' if isinstance(value, str) else ""


class DockerAPI:
    """GETs on the engine's socket. `client` reaches it whatever host and port a URL names."""

    def __init__(self, client: Client, socket: str, on_unavailable: Callable[[], None] | None = None) -> None:
        self.client = client
        self.socket = socket
        # Told when the API fails, so the transport stops offering it (the CLI is used instead).
        self._on_unavailable = on_unavailable
        # Told what each read asks, as `-v` and the dry run's plan show it (the recording
        # transport): "GET SOCKET /path". Containers inspected at once are one entry, their
        # IDs left out: a plan made before the deploy cannot know the IDs it will create.
        self.on_read: list[Callable[[str], None]] = []

    def _note(self, what: str) -> None:
        for hook in self.on_read:
            hook(f"GET {self.socket} {what}")

    def _unavailable(self, why: str) -> APIUnavailable:
        if self._on_unavailable is not None:
            self._on_unavailable()
        return APIUnavailable(why)

    def get(self, path: str) -> Any | None:
        """The JSON at `path`, or None when the engine answers 404 (gone meanwhile)."""
        from ghdeploy.transports.http11 import HTTPError

        try:
            response = self.client.get(f"http://docker{path}")
        except HTTPError as exc:
            raise self._unavailable(f"Docker API {path}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unavailable(f"Docker API {path}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as exc:
            raise self._unavailable(f"Docker API {path}: not JSON") from exc

    def containers(self) -> list[dict[str, Any]]:
        """Every container, running or not: IDs and labels (`docker ps --all`)."""
        self._note("/containers/json?all=1")
        listed = self.get("/containers/json?all=1")
        if not isinstance(listed, list):
            raise self._unavailable("Docker API /containers/json: not a list")
        return [c for c in listed if isinstance(c, dict) and "Id" in c]

    def _each(self, paths: list[str]) -> list[dict[str, Any]]:
        if len(paths) <= 1:
            found = [self.get(p) for p in paths]
        else:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(paths))) as pool:
                found = list(pool.map(self.get, paths))
        return [d for d in found if isinstance(d, dict) and "Id" in d]

    def inspect_containers(self, ids: list[str]) -> list[dict[str, Any]]:
        """`docker inspect --type container IDS`: the ones that still exist, in the same order."""
        if ids:
            self._note(f"/containers/ID/json for each of {len(ids)} container(s)")
        return self._each([f"/containers/{quote(i, safe='')}/json" for i in ids])

    def inspect_images(self, refs: list[str]) -> list[dict[str, Any]]:
        """`docker image inspect REFS` (IDs or names): the ones present on the host."""
        for ref in refs:
            self._note(f"/images/{ref}/json")
        # Names keep their slashes and colons, as the docker client sends them.
        return self._each([f"/images/{quote(r, safe='/:@')}/json" for r in refs])
