"""Reading a host through the Docker Engine API (ghdeploy.docker_api): which socket the host's
CLI would use, the reads themselves, and the hand-over to the docker CLI when the API fails.
The engine here is a handler answering like dockerd does; the real one is in
tests/integration/test_docker_api.py."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import docker_api
from ghdeploy import remote_commands as rc
from ghdeploy.docker_api import APIUnavailable, DockerAPI
from ghdeploy.snapshot import local_image, read_snapshot
from ghdeploy.transports.http11 import Client, ReadError, Request, Response
from ghdeploy.transports.local import LocalConnection
from ghdeploy.transports.recording import RecordingRemote, collapse_polls
from tests.unit.test_hostops import (
    API_ID,
    LAYOUT,
    OLD_ID,
    REPO,
    SNAPSHOT_COMMAND,
    WORKER_ID,
    FakeRemote,
    _assert_full_snapshot,
    _host_answers,
    image_inspect,
    service_inspect,
    targeted_inspect,
)

# --- which socket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docker_host", "context", "config_line", "socket_path"),
    [
        ("", "", "", "/var/run/docker.sock"),
        ("unix:///run/user/1000/docker.sock", "", "", "/run/user/1000/docker.sock"),
        ("unix:///run/docker-h1.sock", "other", '"currentContext": "remote"', "/run/docker-h1.sock"),
        ("tcp://10.0.0.9:2376", "", "", None),
        ("ssh://deploy@builder", "", "", None),
        ("unix://", "", "", None),
        ("", "default", "", "/var/run/docker.sock"),
        ("", "rootless", "", None),
        ("", "", '"currentContext": "rootless"', None),
        ("", "", '"currentContext":"default"', "/var/run/docker.sock"),
    ],
)
def test_the_socket_is_the_one_the_hosts_cli_would_use(
    docker_host: str, context: str, config_line: str, socket_path: str | None
) -> None:
    # DOCKER_HOST wins over any context, as in the docker CLI; a context only the CLI resolves.
    assert docker_api.socket_from(docker_host, context, config_line) == socket_path


def test_the_probe_prints_only_the_context_of_the_cli_config(tmp_path: Path) -> None:
    import subprocess

    config = tmp_path / "config.json"
    secret = "c2VjcmV0OnRva2Vu"
    config.write_text(json.dumps({"auths": {"registry": {"auth": secret}}, "currentContext": "rootless"}, indent=1))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path)}
    out = subprocess.run(docker_api.probe_argv(), env=env, capture_output=True, text=True, check=True).stdout
    assert secret not in out  # registry credentials never leave the host
    assert docker_api.parse_probe(out) is None
    config.write_text("{}")
    out = subprocess.run(
        docker_api.probe_argv(), env=dict(env, DOCKER_HOST="unix:///x.sock"), capture_output=True, text=True
    ).stdout
    assert docker_api.parse_probe(out) == "/x.sock"
    assert docker_api.parse_probe("") == "/var/run/docker.sock"
    assert docker_api.current_context_line(json.dumps({"currentContext": "c1"})) == '"currentContext":"c1"'
    assert docker_api.current_context_line("not json") == ""


# --- reads ------------------------------------------------------------------------------------


class FakeEngine:
    """Answers the Engine API's GETs from containers and images, as dockerd does (404 for what
    is not there); `fail` makes every request answer that HTTP status."""

    def __init__(self, containers: list[dict[str, Any]], images: list[dict[str, Any]], fail: int = 0) -> None:
        self.containers = {c["Id"]: c for c in containers}
        self.images = {i["Id"]: i for i in images}
        self.fail = fail
        self.paths: list[str] = []

    def __call__(self, request: Request) -> Response:
        self.paths.append(request.target)
        if self.fail:
            return Response(self.fail, b'{"message": "boom"}')
        parts = request.path.strip("/").split("/")
        if request.target == "/containers/json?all=1":
            listed = [{"Id": c["Id"], "Labels": c["Config"].get("Labels") or {}} for c in self.containers.values()]
            return Response(200, json.dumps(listed).encode())
        if parts[0] == "containers" and parts[1] in self.containers:
            return Response(200, json.dumps(self.containers[parts[1]]).encode())
        if parts[0] == "images":
            name = "/".join(parts[1:-1])
            found = [i for i in self.images.values() if name == i["Id"] or name in i.get("RepoTags", [])]
            if found:
                return Response(200, json.dumps(found[0]).encode())
        return Response(404, b'{"message": "No such object"}')


class ApiRemote(FakeRemote):
    """A host whose engine answers through the API; the CLI answers are there for the fallback."""

    def __init__(self, engine: FakeEngine, answers: dict[str, tuple[int, str] | str] | None = None) -> None:
        super().__init__(answers or {})
        self.engine = engine
        self.api_off = False

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:  # type: ignore[override]
        if self.api_off:
            return None

        def off() -> None:
            self.api_off = True

        return DockerAPI(Client(handler=self.engine), "/var/run/docker.sock", on_unavailable=off)


def _containers() -> list[dict[str, Any]]:
    other_app = service_inspect("9" * 64, "api", OLD_ID, "other/app:1")
    other_app["Config"]["Labels"]["com.docker.compose.project.working_dir"] = "/srv/other"
    return [
        service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1", health="healthy"),
        service_inspect(WORKER_ID, "worker", OLD_ID, f"{REPO}:v1"),
        targeted_inspect(),
        other_app,
    ]


def test_the_snapshot_through_the_api_is_the_clis_and_runs_no_command() -> None:
    engine = FakeEngine(_containers(), [image_inspect()])
    remote = ApiRemote(engine)
    _assert_full_snapshot(read_snapshot(remote, LAYOUT))
    assert remote.commands() == []
    # Only our containers are inspected (another compose project is not), each image once.
    assert sorted(engine.paths) == sorted(
        [
            "/containers/json?all=1",
            f"/containers/{API_ID}/json",
            f"/containers/{WORKER_ID}/json",
            f"/containers/{targeted_inspect()['Id']}/json",
            f"/images/{OLD_ID}/json",
        ]
    )


def test_a_container_gone_between_list_and_inspect_is_left_out() -> None:
    engine = FakeEngine(_containers(), [image_inspect()])
    real = engine.__call__

    def vanishing(request: Request) -> Response:
        if request.path == f"/containers/{WORKER_ID}/json":
            return Response(404, b'{"message": "No such container"}')
        return real(request)

    remote = ApiRemote(engine)
    remote.engine = vanishing  # type: ignore[assignment]
    snapshot = read_snapshot(remote, LAYOUT)
    assert sorted(snapshot.services) == ["api"]
    assert remote.commands() == []


@pytest.mark.parametrize("status", [500, 403])
def test_an_engine_error_hands_the_read_to_the_cli_for_good(status: int) -> None:
    engine = FakeEngine(_containers(), [image_inspect()], fail=status)
    remote = ApiRemote(engine, _host_answers())
    _assert_full_snapshot(read_snapshot(remote, LAYOUT))
    assert remote.commands() == [SNAPSHOT_COMMAND, rc.render(rc.image_inspect([OLD_ID]))]
    assert remote.api_off and remote.docker_api() is None  # not asked again on this connection
    assert engine.paths == ["/containers/json?all=1"]


def test_a_broken_stream_is_api_unavailable() -> None:
    def broken(request: Request) -> Response:
        raise ReadError("GET /containers/json: connection closed")

    called: list[bool] = []
    api = DockerAPI(Client(handler=broken), "/var/run/docker.sock", on_unavailable=lambda: called.append(True))
    with pytest.raises(APIUnavailable, match="connection closed"):
        api.containers()
    assert called == [True]
    not_json = DockerAPI(Client(handler=lambda r: Response(200, b"<html>")), "/s")
    with pytest.raises(APIUnavailable, match="not JSON"):
        not_json.containers()


def test_local_image_by_name_through_the_api() -> None:
    remote = ApiRemote(FakeEngine([], [image_inspect()]))
    assert local_image(remote, f"{REPO}:v1") == image_inspect()
    assert local_image(remote, f"{REPO}:nope") is None
    assert remote.engine.paths == [f"/images/{REPO}:v1/json", f"/images/{REPO}:nope/json"]
    assert remote.commands() == []


def test_the_recording_transport_records_the_api_requests() -> None:
    seen: list[str] = []
    remote = RecordingRemote(
        ApiRemote(FakeEngine(_containers(), [image_inspect()])), on_record=lambda e: seen.append(e.line)
    )
    read_snapshot(remote, LAYOUT)
    assert seen == [
        "GET /var/run/docker.sock /containers/json?all=1",
        "GET /var/run/docker.sock /containers/ID/json for each of 3 container(s)",
        f"GET /var/run/docker.sock /images/{OLD_ID}/json",
    ]
    assert all(not e.changes for e in remote.recorded)
    collapse_polls(remote.recorded)  # socket entries have no port: sorted first, never an error


# --- the local transport: a real unix socket ---------------------------------------------------


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket answering /containers/json like dockerd (one HTTP/1.1 reply per connection)."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    body = json.dumps([{"Id": API_ID, "Labels": {"com.docker.compose.project.working_dir": "/opt/ghosthands"}}])

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.recv(65536)
                client.sendall(
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()
                )

    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.close()


def test_the_local_transport_reads_the_socket_docker_host_names(engine_socket: Path, tmp_path: Path) -> None:
    local = LocalConnection(env={"HOME": str(tmp_path), "DOCKER_HOST": f"unix://{engine_socket}"})
    api = local.docker_api()
    assert api is not None and api.socket == str(engine_socket)
    assert [c["Id"] for c in api.containers()] == [API_ID]


def test_the_local_transport_leaves_contexts_to_the_cli_and_stops_after_a_failure(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"currentContext": "rootless"}))
    assert LocalConnection(env={"HOME": str(tmp_path)}).docker_api() is None
    assert LocalConnection(env={"HOME": str(tmp_path), "DOCKER_HOST": "tcp://10.0.0.1:2375"}).docker_api() is None
    gone = LocalConnection(env={"HOME": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    api = gone.docker_api()
    assert api is not None
    with pytest.raises(APIUnavailable, match="cannot connect"):
        api.containers()
    assert gone.docker_api() is None


def test_the_dry_runs_host_answers_the_api_from_its_model_when_the_real_host_has_one() -> None:
    from ghdeploy.transports.simulated import SimulatedHost

    # The model reads the real host as a real run would: its engine's API while it has one,
    # the CLI's answers after (both describe the same host).
    answers = _host_answers()
    answers[rc.render(rc.image_inspect([f"{REPO}:nope"]))] = (1, "[]")
    real = ApiRemote(FakeEngine(_containers(), [image_inspect()]), answers)
    seen: list[str] = []
    plan = RecordingRemote(SimulatedHost(real, LAYOUT, {}), on_record=lambda e: seen.append(e.line))
    _assert_full_snapshot(read_snapshot(plan, LAYOUT))
    assert seen[0] == "GET /var/run/docker.sock /containers/json?all=1"  # the reads a real run makes
    assert local_image(plan, f"{REPO}:nope") is None
    real.api_off = True  # a real host without the API: the plan shows the CLI's commands
    fresh = RecordingRemote(SimulatedHost(real, LAYOUT, {}), on_record=lambda e: seen.append(e.line))
    read_snapshot(fresh, LAYOUT)
    assert seen[-2] == f"$ {SNAPSHOT_COMMAND}"
