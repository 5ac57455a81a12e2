"""ghdeploy.hostops: turning docker's JSON into data, and reading a host through a fake Remote."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.errors import OperationFailed, RemoteCommandError
from ghdeploy.hostops import ImageRecord, container_spec, read_snapshot
from ghdeploy.hosts import Host
from ghdeploy.snapshot import _repo_digest_for
from ghdeploy.transports.base import CommandResult

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
REPO = f"{REGISTRY}/ghosthands"
OLD_ID = "sha256:" + "1" * 64
OLD_DIGEST = "sha256:" + "d" * 64
API_ID = "a" * 64
WORKER_ID = "b" * 64
TARGETED_ID = "c" * 64
LAYOUT = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
NODE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image_inspect(image_id: str = OLD_ID, **config: Any) -> dict[str, Any]:
    """A `docker image inspect` entry for an image built by ghdeploy (COMMIT_SHA etc. baked in)."""
    return {
        "Id": image_id,
        "RepoTags": [f"{REPO}:v1", f"{REPO}:latest"],
        "RepoDigests": [f"{REPO}@{OLD_DIGEST}"],
        "Created": "2024-05-01T10:00:00Z",
        "Config": {
            "Env": [
                NODE_PATH,
                "NODE_VERSION=20.11.1",
                "COMMIT_SHA=0ldc0mm1t",
                "BUILD_TIME=2024-05-01T10:00:00Z",
                "IMAGE_TAG=v1",
                "NODE_ENV=production",
            ],
            "Labels": {
                "org.opencontainers.image.revision": "0ldc0mm1t",
                "org.opencontainers.image.source": "https://github.com/example/ghosthands",
            },
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["node", "dist/api.js"],
            "ExposedPorts": {"3100/tcp": {}, "3101/tcp": {}},
            **config,
        },
    }


def targeted_inspect(**overrides: Any) -> dict[str, Any]:
    """A `docker inspect` entry for a standalone targeted worker started from that image."""
    container: dict[str, Any] = {
        "Id": TARGETED_ID,
        "Name": "/gh-worker-7",
        "Image": OLD_ID,
        "State": {"Status": "running", "Running": True, "ExitCode": 0},
        "Config": {
            "Image": f"{REPO}:v1",
            "Env": [
                "WORKER_ID=7",
                NODE_PATH,
                "GH_WORKER_MODE=targeted",
                "NODE_VERSION=20.11.1",
                "COMMIT_SHA=0ldc0mm1t",
                "BUILD_TIME=2024-05-01T10:00:00Z",
                "IMAGE_TAG=v1",
                "NODE_ENV=staging",  # overrides the image's NODE_ENV=production
                "DATABASE_URL=postgres://gh:secret@db/gh",
            ],
            "Labels": {
                "gh.role": "targeted-worker",
                "gh.status_port": "3201",
                "gh.worker_id": "7",
                "org.opencontainers.image.revision": "0ldc0mm1t",  # repeats the image's: dropped
                "org.opencontainers.image.source": "https://example.com/fork",  # differs: kept
            },
            "Entrypoint": ["docker-entrypoint.sh"],
            "Cmd": ["node", "dist/worker.js"],
        },
        "HostConfig": {
            "NetworkMode": "ghosthands_default",
            "PortBindings": {
                "3101/tcp": [{"HostIp": "127.0.0.1", "HostPort": "3201"}],
                "9229/tcp": [{"HostIp": "", "HostPort": "9339"}],
            },
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "Memory": 536870912,
        },
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            container[section] = {**container[section], field: value}
        else:
            container[section] = value
    return container


# --- container_spec -------------------------------------------------------------------------


def test_container_spec_from_realistic_inspect() -> None:
    spec = container_spec(targeted_inspect(), image_inspect())
    assert spec.name == "gh-worker-7"
    assert spec.labels == {
        "gh.role": "targeted-worker",
        "gh.status_port": "3201",
        "gh.worker_id": "7",
        "org.opencontainers.image.source": "https://example.com/fork",
    }
    assert spec.env == [
        "WORKER_ID=7",
        "GH_WORKER_MODE=targeted",
        "NODE_ENV=staging",
        "DATABASE_URL=postgres://gh:secret@db/gh",
    ]
    for option in (
        "--network=ghosthands_default",
        "--publish=127.0.0.1:3201:3101/tcp",
        "--publish=9339:9229/tcp",
        "--restart=unless-stopped",
        "--memory=536870912",
        "--label=gh.worker_id=7",
    ):
        assert option in spec.options
    assert not any("secret" in o for o in spec.options)
    assert (spec.entrypoint, spec.cmd, spec.problems) == (None, ["node", "dist/worker.js"], [])


def test_container_spec_drops_env_inherited_from_the_image() -> None:
    spec = container_spec(targeted_inspect(), image_inspect())
    names = [e.split("=", 1)[0] for e in spec.env]
    for inherited in ("PATH", "COMMIT_SHA", "BUILD_TIME", "IMAGE_TAG", "NODE_VERSION"):
        assert inherited not in names


def test_container_spec_keeps_cmd_only_when_it_differs_from_the_image() -> None:
    same = targeted_inspect(Config__Cmd=["node", "dist/api.js"])
    assert container_spec(same, image_inspect()).cmd is None
    other = targeted_inspect(Config__Cmd=["node", "dist/worker.js", "--queue", "gpu"])
    assert container_spec(other, image_inspect()).cmd == ["node", "dist/worker.js", "--queue", "gpu"]


def test_container_spec_entrypoint_only_when_overridden() -> None:
    spec = container_spec(targeted_inspect(Config__Entrypoint=["/sbin/tini", "--"]), image_inspect())
    assert spec.entrypoint == ["/sbin/tini", "--"]
    assert "--entrypoint=/sbin/tini" in spec.options


def test_overridden_entrypoint_keeps_the_command_when_recreated() -> None:
    """`docker create --entrypoint X` clears the image's CMD, so a container started with an
    entrypoint override and the image's own command must be recreated with that command spelled
    out, or it would start `tini --` with no program at all."""
    container = targeted_inspect(Config__Entrypoint=["/sbin/tini", "--"], Config__Cmd=["node", "dist/api.js"])
    spec = container_spec(container, image_inspect())
    argv = rc.create_container(LAYOUT, spec, f"{REPO}@sha256:{'e' * 64}", True)
    assert argv[-4:] == [f"{REPO}@sha256:{'e' * 64}", "--", "node", "dist/api.js"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"Name": "unless-stopped", "MaximumRetryCount": 0}, "--restart=unless-stopped"),
        ({"Name": "always", "MaximumRetryCount": 0}, "--restart=always"),
        ({"Name": "no", "MaximumRetryCount": 0}, None),
        ({"Name": "", "MaximumRetryCount": 0}, None),
        ({"Name": "on-failure", "MaximumRetryCount": 0}, "--restart=on-failure"),
        ({"Name": "on-failure", "MaximumRetryCount": 3}, "--restart=on-failure:3"),
    ],
)
def test_container_spec_restart_policy(policy: dict[str, Any], expected: str | None) -> None:
    options = container_spec(targeted_inspect(HostConfig__RestartPolicy=policy), image_inspect()).options
    assert [o for o in options if o.startswith("--restart")] == ([expected] if expected else [])


def test_container_spec_null_sections() -> None:
    """docker prints null for empty Env/Labels/PortBindings; and the image may be gone ({})."""
    container = {"Id": TARGETED_ID, "Name": "/w", "Config": {"Env": None, "Labels": None, "Cmd": None}}
    spec = container_spec(container, {})
    assert spec.name == "w"
    assert (spec.env, spec.labels, spec.options, spec.cmd, spec.entrypoint) == ([], {}, [], None, None)


def test_container_spec_keeps_everything_when_the_image_is_unknown() -> None:
    spec = container_spec(targeted_inspect(), {})
    assert "COMMIT_SHA=0ldc0mm1t" in spec.env
    assert spec.labels["org.opencontainers.image.revision"] == "0ldc0mm1t"
    assert spec.entrypoint == ["docker-entrypoint.sh"]


def test_container_spec_port_binding_without_host_port() -> None:
    container = targeted_inspect(HostConfig__PortBindings={"3101/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
    assert "--publish=127.0.0.1::3101/tcp" in container_spec(container, image_inspect()).options


def test_container_spec_carries_the_whole_configuration() -> None:
    """Binds, mounts, anonymous volumes, user, workdir, caps, logging, networks, swap, ulimits, healthcheck."""
    container = targeted_inspect(
        HostConfig__Binds=["/srv/data:/data:ro"],
        HostConfig__Mounts=[{"Type": "volume", "Source": "cache,x", "Target": "/cache", "ReadOnly": True}],
        HostConfig__CapAdd=["NET_ADMIN"],
        HostConfig__CapDrop=["ALL"],
        HostConfig__LogConfig={"Type": "json-file", "Config": {"max-size": "10m"}},
        HostConfig__MemorySwap=1073741824,
        HostConfig__Ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 4096}],
        Config__User="1000:1000",
        Config__WorkingDir="/work",
        Config__Healthcheck={"Test": ["CMD-SHELL", "wget -q localhost:3201/worker/health"], "Interval": 5_000_000_000},
        Mounts=[
            {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": False},
            {"Type": "volume", "Name": "cache,x", "Destination": "/cache", "RW": False},
            {"Type": "volume", "Name": "f00", "Destination": "/var/lib/scratch", "RW": True},
        ],
        NetworkSettings={
            "Networks": {
                "ghosthands_default": {"Aliases": [TARGETED_ID[:12], "w7"]},
                "jobs": {"Aliases": ["worker-7"], "IPAMConfig": {"IPv4Address": "172.30.0.7"}},
            }
        },
    )
    spec = container_spec(container, image_inspect())
    for option in (
        "--volume=/srv/data:/data:ro",
        '--mount=type=volume,"source=cache,x",target=/cache,readonly',
        "--mount=type=volume,source=f00,target=/var/lib/scratch",  # anonymous volume: same data, by name
        "--cap-add=NET_ADMIN",
        "--cap-drop=ALL",
        "--log-driver=json-file",
        "--log-opt=max-size=10m",
        "--memory-swap=1073741824",
        "--ulimit=nofile=1024:4096",
        "--user=1000:1000",
        "--workdir=/work",
        "--health-cmd=wget -q localhost:3201/worker/health",
        "--health-interval=5000000000ns",
        "--network-alias=w7",
    ):
        assert option in spec.options, option
    assert f"--network-alias={TARGETED_ID[:12]}" not in spec.options
    assert spec.networks == [["--alias=worker-7", "--ip=172.30.0.7", "jobs"]]
    assert spec.problems == []


def test_container_spec_names_what_cannot_be_carried_over() -> None:
    container = targeted_inspect(
        HostConfig__Links=["/db:/gh-worker-7/db"],
        Config__Healthcheck={"Test": ["CMD", "/bin/check", "--fast"]},
        Config__Env=["MY.KEY=line1\nline2", "PATH=/x\n/y"],
    )
    problems = container_spec(container, image_inspect()).problems
    assert any("gh-worker-7: HostConfig.Links" in p for p in problems)
    assert any("Healthcheck" in p for p in problems)
    assert any("MY.KEY" in p for p in problems) and any("PATH" in p for p in problems)
    assert not any("line1" in p for p in problems)  # names, never values


def test_multiline_values_are_exported_not_written_to_the_env_file() -> None:
    from ghdeploy.container_spec import env_script

    container = targeted_inspect(Config__Env=["A=1", "PEM=-----BEGIN-----\nabc\n-----END-----", "B= spaced "])
    spec = container_spec(container, image_inspect())
    assert spec.env_file_entries == ["A=1", "B= spaced "]
    assert spec.process_env_entries == ["PEM=-----BEGIN-----\nabc\n-----END-----"]
    text = env_script(spec, "/s/env-w", "EOF_1")
    assert "PEM='-----BEGIN-----\nabc\n-----END-----'; export PEM" in text


def test_differences_accepts_a_faithful_copy_and_names_a_lost_bind() -> None:
    from ghdeploy.container_spec import differences

    old = targeted_inspect(
        HostConfig__Binds=["/srv/data:/data"],
        Config__Env=[*targeted_inspect()["Config"]["Env"], "EXTRA=1"],
    )
    spec = container_spec(old, image_inspect())
    new_image = image_inspect(
        "sha256:" + "2" * 64,
        Env=[
            NODE_PATH,
            "NODE_VERSION=20.11.1",
            "COMMIT_SHA=n3w",
            "BUILD_TIME=x",
            "IMAGE_TAG=v2",
            "NODE_ENV=production",
        ],
    )
    new = targeted_inspect(
        Id="e" * 64,
        Image=new_image["Id"],
        HostConfig__Binds=["/srv/data:/data"],
        Config__Env=[*new_image["Config"]["Env"], *spec.env],
    )
    assert differences(spec, new, new_image) == []
    lost = targeted_inspect(Id="e" * 64, Image=new_image["Id"], Config__Env=[*new_image["Config"]["Env"], *spec.env])
    assert any("/srv/data:/data" in d for d in differences(spec, lost, new_image))


# --- _repo_digest_for -----------------------------------------------------------------------


def test_repo_digest_picks_the_repository_the_container_came_from() -> None:
    digests = [f"other.example.com/mirror@sha256:{'0' * 64}", f"{REPO}@{OLD_DIGEST}"]
    assert _repo_digest_for(digests, f"{REPO}:v1") == f"{REPO}@{OLD_DIGEST}"
    assert _repo_digest_for(digests, f"{REPO}@{OLD_DIGEST}") == f"{REPO}@{OLD_DIGEST}"
    assert _repo_digest_for(digests, REPO) == f"{REPO}@{OLD_DIGEST}"


def test_repo_digest_registry_with_port() -> None:
    digests = [f"localhost:5000/app@sha256:{'0' * 64}", f"localhost:5000/ghosthands@{OLD_DIGEST}"]
    assert _repo_digest_for(digests, "localhost:5000/ghosthands:v2") == f"localhost:5000/ghosthands@{OLD_DIGEST}"
    assert _repo_digest_for(digests, "localhost:5000/ghosthands") == f"localhost:5000/ghosthands@{OLD_DIGEST}"


def test_repo_digest_fallbacks() -> None:
    assert _repo_digest_for([], f"{REPO}:v1") is None
    assert _repo_digest_for(["x/y@sha256:1"], None) == "x/y@sha256:1"
    assert _repo_digest_for(["x/y@sha256:1"], "unrelated:tag") == "x/y@sha256:1"


# --- ImageRecord ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "tag"),
    [
        (f"{REPO}:v1.2", "v1.2"),
        (REPO, "latest"),
        ("localhost:5000/ghosthands:abc", "abc"),
        ("localhost:5000/ghosthands", "latest"),
        ("ghosthands:x", "x"),
        (f"{REPO}@{OLD_DIGEST}", None),
        (None, None),
        ("", None),
    ],
)
def test_image_record_tag(ref: str | None, tag: str | None) -> None:
    assert ImageRecord(image_id=OLD_ID, ref=ref).tag == tag


def test_image_record_digest_and_restore_ref() -> None:
    rec = ImageRecord(image_id=OLD_ID, ref=f"{REPO}:v1", repo_digest=f"{REPO}@{OLD_DIGEST}")
    assert rec.digest == OLD_DIGEST
    assert rec.restore_ref == f"{REPO}@{OLD_DIGEST}"
    local = ImageRecord(image_id=OLD_ID, ref="ghosthands:dev")
    assert local.digest is None
    assert local.restore_ref == OLD_ID
    assert ImageRecord(image_id=None).restore_ref is None


def test_image_record_dict_round_trip() -> None:
    rec = ImageRecord(image_id=OLD_ID, ref=f"{REPO}:v1", repo_digest=f"{REPO}@{OLD_DIGEST}")
    data = rec.to_dict()
    assert data == {
        "image_id": OLD_ID,
        "ref": f"{REPO}:v1",
        "repo_digest": f"{REPO}@{OLD_DIGEST}",
        "tag": "v1",
        "digest": OLD_DIGEST,
    }
    assert ImageRecord.from_dict(json.loads(json.dumps(data))) == rec
    assert ImageRecord.from_dict(None) is None
    assert ImageRecord.from_dict({}) is None


# --- read_snapshot through a fake Remote ----------------------------------------------------


class FakeRemote:
    """Canned answers keyed by the rendered command; anything unexpected fails the test."""

    def __init__(self, answers: dict[str, tuple[int, str] | str]) -> None:
        self.host = Host("10.0.0.5", "ubuntu")
        self.answers = answers
        self.calls: list[tuple[str, str, bytes | None]] = []

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return self._answer("run", argv, stdin)

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        result = self._answer("check", argv, stdin)
        if result.rc != 0:
            raise RemoteCommandError(self.host.label, rc.render(argv), result.rc, result.stderr)
        return result

    def _answer(self, how: str, argv: list[str], stdin: bytes | None) -> CommandResult:
        command = rc.render(argv)
        self.calls.append((how, command, stdin))
        if command not in self.answers:
            raise AssertionError(f"unexpected command: {command}")
        answer = self.answers[command]
        code, out = (0, answer) if isinstance(answer, str) else answer
        return CommandResult(code, out, "" if code == 0 else "error")

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
        return None  # no Engine API: the docker CLI's commands are what this fake answers

    def http_client(self, timeout: float = 5.0) -> Any:
        raise AssertionError("read_snapshot needs no HTTP")

    def commands(self) -> list[str]:
        return [c for _, c, _ in self.calls]


def service_inspect(
    container_id: str, service: str, image_id: str, ref: str, status: str = "running", health: str | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "Running": status == "running"}
    if health:
        state["Health"] = {"Status": health}
    return {
        "Id": container_id,
        "Name": f"/ghosthands-{service}-1",
        "Image": image_id,
        "State": state,
        "Config": {
            "Image": ref,
            "Labels": {
                "com.docker.compose.service": service,
                "com.docker.compose.project.working_dir": "/opt/ghosthands",
            },
        },
        "HostConfig": {},
    }


SNAPSHOT_COMMAND = rc.render(rc.inspect_app_containers(LAYOUT))


def _host_answers(containers: list[dict[str, Any]] | None = None) -> dict[str, tuple[int, str] | str]:
    if containers is None:
        containers = [
            service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1", health="healthy"),
            service_inspect(WORKER_ID, "worker", OLD_ID, f"{REPO}:v1"),
            targeted_inspect(),
        ]
    return {
        SNAPSHOT_COMMAND: json.dumps(containers),
        rc.render(rc.image_inspect([OLD_ID])): json.dumps([image_inspect()]),
    }


def _assert_full_snapshot(snapshot: hostops.Snapshot) -> None:
    assert sorted(snapshot.services) == ["api", "worker"]
    api = snapshot.services["api"]
    assert (api.container_id, api.state, api.health) == (API_ID, "running", "healthy")
    assert api.image == ImageRecord(image_id=OLD_ID, ref=f"{REPO}:v1", repo_digest=f"{REPO}@{OLD_DIGEST}")
    assert snapshot.services["worker"].health == ""
    assert snapshot.app_image == api.image
    (worker,) = snapshot.targeted
    assert worker.spec == container_spec(targeted_inspect(), image_inspect())
    assert worker.status_port == 3201
    assert worker.running is True
    assert worker.image.tag == "v1"
    assert worker.image.digest == OLD_DIGEST


def test_read_snapshot_sorts_services_and_targeted_workers_in_one_round_trip() -> None:
    remote = FakeRemote(_host_answers())
    _assert_full_snapshot(read_snapshot(remote, LAYOUT))
    assert remote.commands() == [SNAPSHOT_COMMAND, rc.render(rc.image_inspect([OLD_ID]))]


def test_read_snapshot_of_an_empty_host_asks_nothing_more() -> None:
    remote = FakeRemote({SNAPSHOT_COMMAND: "[]\n"})
    snapshot = read_snapshot(remote, LAYOUT)
    assert snapshot.services == {}
    assert snapshot.targeted == []
    assert snapshot.app_image is None
    assert len(remote.calls) == 1


def test_read_snapshot_with_a_pruned_image() -> None:
    answers = _host_answers([service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1")])
    answers[rc.render(rc.image_inspect([OLD_ID]))] = (1, "[]")
    snapshot = read_snapshot(FakeRemote(answers), LAYOUT)
    assert snapshot.services["api"].image == ImageRecord(image_id=OLD_ID, ref=f"{REPO}:v1", repo_digest=None)
    assert snapshot.app_image is not None and snapshot.app_image.restore_ref == OLD_ID


def test_read_snapshot_worker_only_gives_the_worker_image() -> None:
    answers = _host_answers([service_inspect(WORKER_ID, "worker", OLD_ID, f"{REPO}:v1")])
    snapshot = read_snapshot(FakeRemote(answers), LAYOUT)
    assert list(snapshot.services) == ["worker"]
    assert snapshot.app_image == snapshot.services["worker"].image


def test_read_snapshot_prefers_the_running_container_and_skips_one_off_runs() -> None:
    exited = service_inspect("e" * 64, "api", OLD_ID, f"{REPO}:v0", status="exited")
    running = service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1", status="restarting")
    running["State"]["Status"] = "running"
    oneoff = service_inspect("f" * 64, "worker", OLD_ID, f"{REPO}:v1")
    oneoff["Config"]["Labels"]["com.docker.compose.oneoff"] = "True"
    snapshot = read_snapshot(FakeRemote(_host_answers([running, exited, oneoff])), LAYOUT)
    assert list(snapshot.services) == ["api"]
    assert snapshot.services["api"].container_id == API_ID


def test_read_snapshot_reports_a_failed_listing() -> None:
    remote = FakeRemote({SNAPSHOT_COMMAND: (1, "")})
    with pytest.raises(OperationFailed, match="could not list the app's containers"):
        read_snapshot(remote, LAYOUT)


def test_targeted_workers_sorted_by_name() -> None:
    second_id = "9" * 64
    stopped = targeted_inspect(Id=second_id, Name="/gh-worker-1", State={"Status": "exited", "Running": False})
    snapshot = read_snapshot(FakeRemote(_host_answers([targeted_inspect(), stopped])), LAYOUT)
    assert [(w.spec.name, w.running) for w in snapshot.targeted] == [("gh-worker-1", False), ("gh-worker-7", True)]


# --- records and writes ---------------------------------------------------------------------


def test_append_record_sends_one_json_line_on_stdin() -> None:
    argv = rc.append_file(LAYOUT.state_dir, LAYOUT.history_file)
    remote = FakeRemote({rc.render(argv): ""})
    hostops.append_record(remote, LAYOUT, {"b": 2, "a": "x y"})
    ((how, command, stdin),) = remote.calls
    assert (how, command) == ("check", rc.render(argv))
    assert stdin == b'{"a": "x y", "b": 2}\n'


def test_read_history_skips_garbage() -> None:
    lines = '{"action": "deploy", "n": 1}\nnot json\n[1]\n{"action": "rollback", "n": 2}\n'
    remote = FakeRemote({rc.render(rc.tail_file(LAYOUT.history_file, 5)): lines})
    assert hostops.read_history(remote, LAYOUT, 5) == [{"action": "deploy", "n": 1}, {"action": "rollback", "n": 2}]


def test_read_pending_variants() -> None:
    command = rc.render(rc.read_file(LAYOUT.pending_file))
    assert hostops.read_pending(FakeRemote({command: ""}), LAYOUT) is None
    assert hostops.read_pending(FakeRemote({command: '{"action": "deploy"}\n'}), LAYOUT) == {"action": "deploy"}
    assert hostops.read_pending(FakeRemote({command: "{truncat"}), LAYOUT) == {"unreadable": "{truncat"}


def test_local_image() -> None:
    command = rc.render(rc.image_inspect(["ghosthands:v1"]))
    assert hostops.local_image(FakeRemote({command: (1, "[]")}), "ghosthands:v1") is None
    found = hostops.local_image(FakeRemote({command: json.dumps([image_inspect()])}), "ghosthands:v1")
    assert found is not None and found["Id"] == OLD_ID


def test_require_ok() -> None:
    assert hostops.require_ok(CommandResult(0, "out", ""), "pull", "h") == "out"
    with pytest.raises(OperationFailed, match=r"h: pull failed \(exit 3\): denied"):
        hostops.require_ok(CommandResult(3, "", "denied\n"), "pull", "h")


def test_only_this_apps_targeted_workers_are_ours() -> None:
    from ghdeploy.hostops import belongs_to

    ours = targeted_inspect()
    theirs = targeted_inspect(Config__Image="other.example/otherapp:1")  # same image, another app's name
    by_id = targeted_inspect(Config__Image=OLD_ID)
    assert belongs_to(ours, image_inspect(), REPO)
    assert not belongs_to(theirs, image_inspect(), REPO)
    assert belongs_to(by_id, image_inspect(), REPO)  # started by ID: the image's names decide
    assert not belongs_to(by_id, {"RepoTags": ["other.example/otherapp:1"]}, REPO)
    layout = rc.RemoteLayout(LAYOUT.app_dir, LAYOUT.compose_file, image_repo=REPO)
    other = targeted_inspect(Id="f" * 64, Name="/other-worker", Config__Image="other.example/otherapp:1")
    snapshot = read_snapshot(FakeRemote(_host_answers([targeted_inspect(), other])), layout)
    assert [w.spec.name for w in snapshot.targeted] == ["gh-worker-7"]


def test_a_stopped_runs_backup_is_seen_and_put_back() -> None:
    backup = targeted_inspect(
        Id="9" * 64, Name="/gh-worker-7.ghdeploy-backup", State={"Status": "exited", "Running": False}
    )
    answers = _host_answers([targeted_inspect(), backup])
    remote = FakeRemote(answers)
    snapshot = read_snapshot(remote, LAYOUT)
    assert [w.spec.name for w in snapshot.targeted] == ["gh-worker-7"]  # the backup is no worker of its own
    assert snapshot.backups == ["gh-worker-7"] and not snapshot.empty
    answers[rc.render(rc.restore_container("gh-worker-7", True))] = ""
    notes = hostops.recover_backups(remote, snapshot)
    assert remote.commands()[-1] == rc.render(rc.restore_container("gh-worker-7", True))
    assert "put back" in notes[0] and "started" in notes[0]


def _compose_config(**services: str) -> str:
    return json.dumps({"services": {name: {"image": image} for name, image in services.items()}})


def test_preflight_facts_finds_the_services_of_the_app_image() -> None:
    probe = rc.IMAGE_PROBE
    answers = _host_answers()
    answers[rc.render(rc.compose_services(LAYOUT))] = _compose_config(api=probe, worker=probe, redis="redis:7")
    facts = hostops.preflight_facts(FakeRemote(answers), LAYOUT)
    assert (facts.image_services, facts.problems, facts.first_deploy) == (["api", "worker"], [], False)


def test_preflight_facts_refuses_a_compose_file_without_api_or_worker() -> None:
    answers = _host_answers()
    answers[rc.render(rc.compose_services(LAYOUT))] = _compose_config(api=rc.IMAGE_PROBE, web="x:1")
    facts = hostops.preflight_facts(FakeRemote(answers), LAYOUT)
    assert any("defines no service worker" in p for p in facts.problems)
    answers[rc.render(rc.compose_services(LAYOUT))] = (1, "")
    assert any(
        "docker compose config` failed" in p for p in hostops.preflight_facts(FakeRemote(answers), LAYOUT).problems
    )


def test_preflight_facts_empty_host_is_a_first_deploy_and_a_stranger_is_refused() -> None:
    layout = rc.RemoteLayout(LAYOUT.app_dir, LAYOUT.compose_file, image_repo=REPO)
    answers = _host_answers([])
    answers[rc.render(rc.compose_services(layout))] = _compose_config(api=rc.IMAGE_PROBE, worker=rc.IMAGE_PROBE)
    answers[rc.render(rc.list_all_containers())] = "node-exporter\tprom/node-exporter:1\t\t\n"
    facts = hostops.preflight_facts(FakeRemote(answers), layout)
    assert facts.first_deploy and facts.problems == [] and "nothing to roll back to" in facts.notes[0]
    # the app started from another directory (or by the old script): refused, not deployed blind
    answers[rc.render(rc.list_all_containers())] = f"gh-api\t{REPO}:v1\tapi\t/home/ec2-user/gh\n"
    facts = hostops.preflight_facts(FakeRemote(answers), layout)
    assert not facts.first_deploy and "look like the app: gh-api" in facts.problems[0]


def test_preflight_facts_names_a_targeted_worker_that_cannot_be_carried_over() -> None:
    answers = _host_answers(
        [
            service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1"),
            targeted_inspect(HostConfig__Links=["/db:/gh-worker-7/db"]),
        ]
    )
    answers[rc.render(rc.compose_services(LAYOUT))] = _compose_config(api=rc.IMAGE_PROBE, worker=rc.IMAGE_PROBE)
    facts = hostops.preflight_facts(FakeRemote(answers), LAYOUT)
    assert facts.problems and facts.problems[0].startswith("gh-worker-7: HostConfig.Links")


def test_a_replacement_not_configured_like_the_old_one_is_undone() -> None:
    old = targeted_inspect(HostConfig__Binds=["/srv/data:/data"])
    worker = hostops.TargetedWorker(
        spec=container_spec(old, image_inspect()), image=ImageRecord(OLD_ID), status_port=3201, running=True
    )
    new_ref = f"{REPO}:v2"
    created = targeted_inspect(Id="e" * 64)  # the engine dropped the bind mount
    answers: dict[str, tuple[int, str] | str] = {
        rc.render(rc.create_container(LAYOUT, worker.spec, new_ref, True)): "",
        rc.render(rc.inspect_containers(["gh-worker-7"])): json.dumps([created]),
        rc.render(rc.image_inspect([OLD_ID])): json.dumps([image_inspect()]),
        rc.render(rc.restore_container("gh-worker-7", True)): "",
    }
    remote = FakeRemote(answers)
    with pytest.raises(OperationFailed, match=r"not configured like the old one.*/srv/data:/data"):
        hostops.replace_targeted(remote, LAYOUT, worker, new_ref)
    commands = remote.commands()
    assert commands[-1] == rc.render(rc.restore_container("gh-worker-7", True))  # the old one is back
    assert rc.render(rc.start_container("gh-worker-7")) not in commands  # the bad one never started
    stdin = remote.calls[0][2]
    assert stdin is not None and b"DATABASE_URL=postgres://gh:secret@db/gh" in stdin  # env on stdin only
    assert "secret" not in commands[0]


def test_multiline_values_under_ordinary_names_are_carried() -> None:
    container = targeted_inspect(Config__Env=['GOOGLE_CREDENTIALS={\n "k": 1\n}', "SSL_KEY=a\nb", "DOCKER_X=a\nb"])
    problems = container_spec(container, image_inspect()).problems
    assert problems == ["gh-worker-7: Config.Env DOCKER_X: a multi-line value under a name the docker CLI itself reads"]


def test_a_backup_whose_replacement_runs_the_apps_image_is_dropped() -> None:
    backup = targeted_inspect(
        Id="9" * 64, Name="/gh-worker-7.ghdeploy-backup", State={"Status": "exited", "Running": False}
    )
    api = service_inspect(API_ID, "api", OLD_ID, f"{REPO}:v1")
    answers = _host_answers([api, targeted_inspect(), backup])
    remote = FakeRemote(answers)
    snapshot = read_snapshot(remote, LAYOUT)
    answers[rc.render(rc.drop_backup("gh-worker-7"))] = ""
    notes = hostops.recover_backups(remote, snapshot)
    assert remote.commands()[-1] == rc.render(rc.drop_backup("gh-worker-7")) and "removed" in notes[0]
