"""The dry run is the real per-host sequence run against the recording transport.

A hand-written fake docker host (independent of ghdeploy's SimulatedHost) plays the real host.
The plan made from it must be exactly the list of commands a real deploy then sends to it, and
making the plan must not change it.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from typing import Any

import pytest

from ghdeploy import locks
from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.engine.host import Operation, run_host
from ghdeploy.engine.plan import PLACEHOLDER_LOCK_ID, instant_clock, plan_host
from ghdeploy.engine.prepull import pull_then_roll
from ghdeploy.errors import RemoteCommandError
from ghdeploy.hosts import Host
from ghdeploy.progress import NullReporter
from ghdeploy.records import LockInfo
from ghdeploy.registry import RegistryAuth
from ghdeploy.results import Target
from ghdeploy.transports import http11
from ghdeploy.transports.base import CommandResult
from ghdeploy.transports.recording import Recorded, RecordingRemote, collapse_polls, read_only
from ghdeploy.transports.simulated import PULLED_ID

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = f"{REGISTRY}/ghosthands"
LAYOUT = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64
OLD_DIGEST, NEW_DIGEST = "sha256:" + "d" * 64, "sha256:" + "e" * 64
TOKEN = "SECRET-ECR-TOKEN-0123456789"


class FakeDockerHost:
    """Just enough of a docker host for one deploy: containers, images, files, a lock, HTTP."""

    def __init__(self, *, busy: bool = False, targeted: bool = False, pulled: bool = False) -> None:
        self.host = Host("10.0.0.1", "ec2-user")
        self.images: dict[str, dict[str, Any]] = {
            OLD: {"Id": OLD, "RepoDigests": [f"{REPO}@{OLD_DIGEST}"], "Config": {}},
            f"{REPO}:v1": {"Id": OLD, "RepoDigests": [f"{REPO}@{OLD_DIGEST}"], "Config": {}},
        }
        if pulled:
            self._add_new()
        self.containers: list[dict[str, Any]] = [self._service("api"), self._service("worker")]
        if targeted:
            self.containers.append(
                {
                    "Id": "t" * 64,
                    "Name": "/gh-worker-7",
                    "Image": OLD,
                    "State": {"Status": "running", "Running": True},
                    "Config": {
                        "Image": f"{REPO}:v1",
                        "Env": ["WORKER_ID=7"],
                        "Labels": {"gh.role": "targeted-worker", "gh.status_port": "3201"},
                    },
                    "HostConfig": {},
                }
            )
        self.files: dict[str, str] = {LAYOUT.history_file: ""}
        self.lock: str | None = None
        self.busy = {3101: busy, 3201: busy}
        self.polls_until_drained = {3101: 2, 3201: 3}
        self.up = True

    def _add_new(self) -> None:
        info = {"Id": NEW, "RepoDigests": [f"{REPO}@{NEW_DIGEST}"], "Config": {}}
        self.images[f"{REPO}:v2"] = info
        self.images[NEW] = info

    def _service(self, name: str) -> dict[str, Any]:
        return {
            "Id": name * 8,
            "Image": OLD,
            "RestartCount": 0,
            "State": {"Status": "running", "Running": True},
            "Config": {"Image": f"{REPO}:v1", "Labels": {"com.docker.compose.service": name}},
        }

    def named(self, name: str) -> dict[str, Any]:
        return next(c for c in self.containers if c.get("Name") == f"/{name}")

    def state(self) -> Any:
        return copy.deepcopy((self.images, self.containers, self.files, self.lock, self.busy))

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        ok = CommandResult(0, "", "")
        if argv == rc.inspect_app_containers(LAYOUT):
            return CommandResult(0, json.dumps(self.containers), "")
        if argv[:3] == ["docker", "image", "inspect"]:
            found = [self.images[r] for r in argv[3:] if r in self.images]
            return CommandResult(0 if len(found) == len(argv) - 3 else 1, json.dumps(found), "")
        if argv == rc.acquire_lock(LAYOUT):
            self.lock = (stdin or b"").decode()
            return ok
        if argv[:3] == rc.release_lock(LAYOUT, "x")[:3]:
            self.lock = None
            return ok
        if argv[2:3] == rc.write_registry_auth("/s", "/d")[2:3]:
            auth = json.loads(stdin or b"{}")["auths"][REGISTRY]["auth"]
            assert base64.b64decode(auth).decode() == f"AWS:{TOKEN}"
            return ok
        if "pull" in argv:
            self._add_new()
            return ok
        if "up" in argv and "compose" in argv:
            ref = argv[1].split("=", 1)[1]
            for c in self.containers:
                if "com.docker.compose.service" in c["Config"]["Labels"]:
                    c["Image"], c["Config"]["Image"] = self.images[ref]["Id"], ref
            return ok
        if argv[:2] == ["docker", "stop"]:
            self.containers[-1]["State"] = {"Status": "exited", "Running": False}
            return ok
        if argv[2:3] == rc.create_container(LAYOUT, ContainerSpec("n", [], []), "i", True)[2:3]:
            name, backup = argv[5], argv[6]
            old = self.named(name)
            old["Name"] = f"/{backup}"
            new = copy.deepcopy(old)
            image = argv[argv.index("--") + 1]
            new.update(Id="n" * 64, Name=f"/{name}", Image=self.images[image]["Id"])
            new["State"] = {"Status": "created", "Running": False}
            self.containers.append(new)
            return ok
        if argv[:3] == ["docker", "container", "inspect"]:
            return CommandResult(0, json.dumps([self.named(argv[-1])]), "")
        if argv[:2] == ["docker", "start"]:
            self.named(argv[-1])["State"] = {"Status": "running", "Running": True}
            return ok
        if argv[2:3] == rc.drop_backup("n")[2:3]:
            self.containers = [c for c in self.containers if c.get("Name") != f"/{argv[-1]}"]
            return ok
        if argv[:3] == rc.read_file("/p")[:3]:
            return CommandResult(0, self.files.get(argv[-1], ""), "")
        if argv[:3] == rc.write_file("/d", "/p")[:3]:
            self.files[argv[-1]] = (stdin or b"").decode()
            return ok
        if argv[:3] == rc.append_file("/d", "/p")[:3]:
            self.files[argv[-1]] = self.files.get(argv[-1], "") + (stdin or b"").decode()
            return ok
        if argv[:2] == ["rm", "-f"]:
            self.files.pop(argv[-1], None)
            return ok
        return ok  # compose rm, rm -rf of the login config

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        result = self.run(argv, stdin=stdin, timeout=timeout)
        if result.rc:
            raise RemoteCommandError(self.host.label, rc.render(argv), result.rc, result.stderr)
        return result

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
        return None  # no Engine API: the docker CLI's commands are what this fake answers

    def http_client(self, timeout: float = 5.0) -> http11.Client:
        lock = threading.Lock()

        def answer(request: http11.Request) -> http11.Response:
            port, path = request.port, request.path
            with lock:
                if path == "/health":
                    return http11.Response(200 if self.up else 503, b"")
                if path == "/worker/drain" and request.method == "POST":
                    return http11.Response(202, b"")
                if path == "/worker/health":
                    if self.busy.get(port) and self.polls_until_drained[port] > 0:
                        self.polls_until_drained[port] -= 1
                        return http11.Response(200, json.dumps({"deploy_safe": False, "active_jobs": 1}).encode())
                    return http11.Response(200, json.dumps({"deploy_safe": True, "active_jobs": 0}).encode())
            return http11.Response(404, b"")

        return http11.Client(handler=answer, timeout=timeout)


def operation() -> Operation:
    return Operation(
        layout=LAYOUT,
        reporter=NullReporter(),
        api_port=3100,
        worker_port=3101,
        health_timeout=5,
        drain_timeout=5,
        stop_timeout=5,
        auth=RegistryAuth(REGISTRY, "AWS", TOKEN),
        clock=instant_clock(),
        operator="al@laptop",
    )


TARGET = Target(ref=f"{REPO}:v2", label="ghosthands:v2", digest=NEW_DIGEST)


def real_run(host: FakeDockerHost, target: Target, action: str = "deploy") -> list[Recorded]:
    """What a real run sends, in the order the fleet does it: lock, (a deploy: the pull on every
    host first), the host's sequence, unlock."""
    remote = RecordingRemote(host)
    assert locks.acquire(remote, LAYOUT, LockInfo(id=PLACEHOLDER_LOCK_ID)) is None
    if action == "deploy":
        label = remote.host.label
        fleet, _ = pull_then_roll(operation(), {label: remote}, [label], lambda _label: target, 1, action)
        result = fleet.hosts[0]
    else:
        result = run_host(operation(), remote, target, action)
    assert result.succeeded, result.error
    assert locks.release(remote, LAYOUT, PLACEHOLDER_LOCK_ID)
    return remote.recorded


def comparable(commands: list[str], pulled: bool = False) -> list[str]:
    """Random names as the plan shows them, and the ID of an image the plan could not know yet
    (not pulled at the time)."""
    out = [re.sub(r"docker-config-[0-9a-f]{12}", "docker-config-XXXXXXXXXXXX", c) for c in commands]
    if pulled:
        out = [c.replace(NEW, PULLED_ID) for c in out]
    return out


@pytest.mark.parametrize(
    "setup",
    [
        {},
        {"busy": True},
        {"targeted": True},
        {"targeted": True, "busy": True},
        {"pulled": True},
    ],
    ids=["pull", "busy-worker", "targeted-worker", "targeted-busy", "already-pulled"],
)
def test_the_dry_run_plan_is_the_list_of_commands_a_real_deploy_sends(setup: dict[str, Any]) -> None:
    host = FakeDockerHost(**setup)
    before = host.state()
    plan = plan_host(operation(), host, TARGET, "deploy")
    assert host.state() == before, "making the plan changed the host"

    sent = real_run(host, TARGET)
    pulled = not setup.get("pulled", False)
    assert comparable(plan["commands"]) == comparable([c.shown for c in collapse_polls(sent)], pulled)
    # and the real deploy did what the plan said
    assert all(c["Image"] == NEW for c in host.containers)
    assert plan["current"]["image_id"] == OLD and plan["rollback_to"] == plan["current"]
    assert ("pulling ghosthands:v2" in plan["summary"]) is not setup.get("pulled", False)


def test_the_plan_shows_no_secret_and_marks_what_changes_the_host() -> None:
    plan = plan_host(operation(), FakeDockerHost(), TARGET, "deploy")
    text = json.dumps(plan)
    assert TOKEN not in text
    login = next(s for s in plan["steps"] if "config.json" in s["command"])
    assert login["stdin"] and login["changes"]
    assert any("docker-config-XXXXXXXXXXXX" in c for c in plan["commands"])
    assert f"{LAYOUT.lock_dir} {PLACEHOLDER_LOCK_ID}" in plan["commands"][-1]
    reads = [s for s in plan["steps"] if not s["changes"]]
    assert reads and all(s["kind"] == "http" or "inspect" in s["command"] or "cat" in s["command"] for s in reads)
    compose_up = f"env ECR_IMAGE={REPO}:v2 docker compose -f {LAYOUT.compose_file} up -d --no-deps --remove-orphans -- api worker"
    assert compose_up in plan["commands"]
    assert plan["summary"][:3] == [
        "pulling ghosthands:v2",
        "image ready, waiting for the switch",
        "recording what runs now",
    ]


def test_a_rollback_plan_runs_the_same_sequence_to_the_recorded_image() -> None:
    host = FakeDockerHost(pulled=True)
    for c in host.containers:
        c["Image"], c["Config"]["Image"] = NEW, f"{REPO}:v2"
    back = Target(ref=f"{REPO}:v1", label="ghosthands:v1", image_id=OLD)
    before = host.state()
    op = operation()
    op.auth = None  # a rollback to a recorded image pulls nothing
    plan = plan_host(op, host, back, "rollback")
    assert host.state() == before
    assert plan["rollback_to"]["image_id"] == OLD and plan["current"]["image_id"] == NEW
    assert not any("pull" in c for c in plan["commands"])
    sent = real_run(host, back, "rollback")
    assert comparable(plan["commands"]) == comparable([c.shown for c in collapse_polls(sent)])


def test_a_plan_that_would_fail_says_so() -> None:
    op = operation()
    op.auth = None
    warnings: list[str] = []
    op.reporter = type("R", (NullReporter,), {"warn": lambda self, m: warnings.append(m)})()
    plan = plan_host(op, FakeDockerHost(), TARGET, "deploy")
    assert any("no registry login" in w for w in warnings)
    assert not any("compose -f" in c and " up " in c for c in plan["commands"])


def test_collapse_polls_keeps_one_round_of_each_loop() -> None:
    def http(path: str) -> Recorded:
        return Recorded("http", f"GET localhost:3100{path}")

    a, b = http("/a"), http("/b")
    assert collapse_polls([a, a, a, b]) == [a, b]
    i, j = Recorded("run", "docker inspect i"), Recorded("run", "docker inspect j")
    assert collapse_polls([i, j, a, i, j, a, i, j, a, b]) == [i, j, a, b]  # check_running's loop
    assert collapse_polls([a, b, a]) == [a, b]  # one run of requests: each once

    def run(text: str) -> Recorded:
        return Recorded("run", text)

    x = run("docker image inspect x")
    w1, w2 = Recorded("http", "GET localhost:3101/worker/health"), Recorded("http", "GET localhost:3201/worker/health")
    d1, d2 = Recorded("http", "POST localhost:3101/worker/drain"), Recorded("http", "POST localhost:3201/worker/drain")
    assert collapse_polls([x, w2, w1, d1, w1, d2, w2, w1, w2, x]) == [x, w1, d1, w2, d2, x]
    assert collapse_polls([x, a, x, a]) == [x, a]


def test_read_only_commands_are_known() -> None:
    assert read_only(rc.inspect_app_containers(LAYOUT))
    assert read_only(rc.image_inspect(["x"]))
    assert read_only(rc.read_file(LAYOUT.pending_file))
    assert not read_only(rc.write_file(LAYOUT.state_dir, LAYOUT.pending_file))
    assert not read_only(rc.compose_up(LAYOUT, "x"))
