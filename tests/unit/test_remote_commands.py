"""ghdeploy.remote_commands: the exact command lines sent to a host, and the sh scripts run for real.

The scripts are plain POSIX sh, so they are executed here the way sshd runs an exec request:
`sh -c "<rendered command>"`, with a fake `docker` (a small Python script that logs its argv and
stdin) first on PATH. That proves the quoting as well as the behaviour.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.hosts import Host
from ghdeploy.records import LockInfo, lock_text
from ghdeploy.transports.base import CommandResult
from ghdeploy.transports.http11 import Client

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST = "sha256:" + "a" * 64
IMAGE = f"{REGISTRY}/ghosthands@{DIGEST}"
LAYOUT = rc.RemoteLayout("/opt/ghosthands", "/opt/ghosthands/docker-compose.prod.yml")
DOCKER_CONFIG = "/opt/ghosthands/.ghdeploy/docker-config-0123abcd"
EVIL = 'it\'s "quoted" $(touch /tmp/x) `id` ; rm -rf / & $HOME'


# --- layout ---------------------------------------------------------------------------------


def test_layout_paths() -> None:
    assert LAYOUT.state_dir == "/opt/ghosthands/.ghdeploy"
    assert LAYOUT.history_file == "/opt/ghosthands/.ghdeploy/history.jsonl"
    assert LAYOUT.pending_file == "/opt/ghosthands/.ghdeploy/pending.json"
    assert LAYOUT.lock_dir == "/opt/ghosthands/.ghdeploy/lock"


def test_layout_trailing_slash() -> None:
    assert rc.RemoteLayout("/srv/gh/", "/srv/gh/x.yml").state_dir == "/srv/gh/.ghdeploy"


# --- pinned command lines -------------------------------------------------------------------


def test_preflight_string() -> None:
    assert rc.render(rc.preflight(LAYOUT)) == (
        "sh -c 'command -v docker >/dev/null 2>&1 || exit 10; "
        "docker compose version --short >/dev/null 2>&1 || exit 11; "
        "facts=$(docker info --format '\"'\"'{{.DockerRootDir}}|{{.Architecture}}|{{.OSType}}'\"'\"' 2>/dev/null) || exit 12; "
        'test -d "$1" || exit 13; test -f "$2" || exit 14; docker compose version --short; echo "$facts"; '
        'df -Pk "${facts%%|*}" 2>/dev/null | tail -n 1; exit 0\' '
        "sh /opt/ghosthands /opt/ghosthands/docker-compose.prod.yml"
    )


def test_preflight_codes_are_documented() -> None:
    assert set(rc.PREFLIGHT_CODES) == {10, 11, 12, 13, 14}
    assert rc.LOCK_HELD_CODE == 75


def test_compose_pull_string_names_only_the_app_services() -> None:
    assert rc.render(rc.compose_pull(LAYOUT, IMAGE, DOCKER_CONFIG, ["api", "worker"])) == (
        f"env DOCKER_CONFIG={DOCKER_CONFIG} env ECR_IMAGE={IMAGE} "
        "docker compose -f /opt/ghosthands/docker-compose.prod.yml pull --quiet -- api worker"
    )


def test_compose_up_string() -> None:
    assert rc.render(rc.compose_up(LAYOUT, IMAGE, ["api", "worker"])) == (
        f"env ECR_IMAGE={IMAGE} docker compose -f /opt/ghosthands/docker-compose.prod.yml "
        "up -d --no-deps --remove-orphans -- api worker"
    )
    # a first deploy on an empty host brings up the whole file
    assert rc.render(rc.compose_up(LAYOUT, IMAGE)) == (
        f"env ECR_IMAGE={IMAGE} docker compose -f /opt/ghosthands/docker-compose.prod.yml up -d --remove-orphans"
    )


def test_compose_services_probe() -> None:
    assert rc.compose_services(LAYOUT) == [
        "env",
        f"ECR_IMAGE={rc.IMAGE_PROBE}",
        "docker",
        "compose",
        "-f",
        "/opt/ghosthands/docker-compose.prod.yml",
        "config",
        "--format",
        "json",
    ]


def test_inspect_app_containers_passes_the_app_dir_as_a_parameter() -> None:
    argv = rc.inspect_app_containers(LAYOUT)
    assert argv[:2] == ["sh", "-c"] and argv[3:5] == ["sh", "/opt/ghosthands"] and argv[5] == "targeted-worker"
    assert 'ENVIRON["D"]' in argv[2] and 'D="$1"' in argv[2]
    assert "/opt/ghosthands" not in argv[2]  # the value only ever arrives as "$1"


FAKE_DOCKER_PS = """#!/bin/sh
case "$1" in
  ps) printf '%s\n' "$ROWS" ;;
  inspect) shift 3; printf '['; sep=''; for id in "$@"; do printf '%s{"Id": "%s"}' "$sep" "$id"; sep=','; done; echo ']' ;;
esac
"""


def test_inspect_app_containers_keeps_the_apps_and_the_targeted_workers(tmp_path: Path) -> None:
    """The real script, run by sh against a stand-in docker: one `docker ps` with both labels,
    awk keeps the app directory's containers and the targeted workers (an empty label column
    stays a column), others' containers are left out; an app dir with spaces is one value."""
    import json
    import os
    import subprocess

    (tmp_path / "docker").write_text(FAKE_DOCKER_PS)
    (tmp_path / "docker").chmod(0o755)
    app_dir = "/opt/ghost hands"
    rows = "\n".join(
        [
            f"aaa\t{app_dir}\t",  # the app's api
            "bbb\t\ttargeted-worker",  # a targeted worker: no compose label
            "ccc\t/opt/other\t",  # another project
            "ddd\t/opt/ghost\t",  # a prefix of ours is not ours
            f"eee\t{app_dir}\ttargeted-worker",
        ]
    )
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "ROWS": rows}
    layout = rc.RemoteLayout(app_dir, f"{app_dir}/docker-compose.prod.yml")
    out = subprocess.run(rc.inspect_app_containers(layout), env=env, capture_output=True, text=True, check=True)
    assert [c["Id"] for c in json.loads(out.stdout)] == ["aaa", "bbb", "eee"]
    env["ROWS"] = "ccc\t/opt/other\t"
    out = subprocess.run(rc.inspect_app_containers(layout), env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_compose_with_a_tag_reference() -> None:
    argv = rc.compose_up(LAYOUT, f"{REGISTRY}/ghosthands:v1.2")
    assert argv[:2] == ["env", f"ECR_IMAGE={REGISTRY}/ghosthands:v1.2"]


def test_acquire_lock_string() -> None:
    assert rc.render(rc.acquire_lock(LAYOUT)) == (
        'sh -c \'umask 077 && mkdir -p "$1" || exit 1; t="$1/lock-info.$$"; now=$(date -u +%Y-%m-%dT%H:%M:%SZ); '
        'sed "s/\\"since\\": \\"@host-now@\\"/\\"since\\": \\"$now\\"/" > "$t" || { rm -f "$t"; exit 1; }; '
        'if mkdir "$2" 2>/dev/null; then mv -f "$t" "$2/info.json" && exit 0; rm -rf "$2" "$t"; exit 1; fi; '
        'rm -f "$t"; i=0; '
        'while [ -d "$2" ] && [ ! -f "$2/info.json" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; '
        'cat "$2/info.json" 2>/dev/null; exit 75\' sh /opt/ghosthands/.ghdeploy /opt/ghosthands/.ghdeploy/lock'
    )


def test_release_and_read_lock_strings() -> None:
    assert rc.render(rc.release_lock(LAYOUT)) == "rm -rf -- /opt/ghosthands/.ghdeploy/lock"
    assert rc.render(rc.release_lock(LAYOUT, "0123456789abcdef")) == (
        'sh -c \'test -d "$1" || exit 0; grep -qF "$2" "$1/info.json" 2>/dev/null || exit 75; rm -rf -- "$1"\' '
        "sh /opt/ghosthands/.ghdeploy/lock 0123456789abcdef"
    )
    assert rc.render(rc.read_lock(LAYOUT)) == (
        'sh -c \'test -d "$1" || exit 0; cat "$1/info.json" 2>/dev/null || echo "{}"\' '
        "sh /opt/ghosthands/.ghdeploy/lock"
    )


def test_append_file_string() -> None:
    assert rc.render(rc.append_file(LAYOUT.state_dir, LAYOUT.history_file)) == (
        'sh -c \'umask 077 && mkdir -p "$1" || exit 1; '
        'if [ -s "$2" ] && [ -n "$(tail -c 1 "$2")" ]; then echo >> "$2" || exit 1; fi; cat >> "$2"\' '
        "sh /opt/ghosthands/.ghdeploy /opt/ghosthands/.ghdeploy/history.jsonl"
    )


def test_write_read_tail_remove_strings() -> None:
    assert rc.render(rc.write_file(LAYOUT.state_dir, LAYOUT.pending_file)) == (
        'sh -c \'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"\' '
        "sh /opt/ghosthands/.ghdeploy /opt/ghosthands/.ghdeploy/pending.json"
    )
    assert rc.render(rc.read_file(LAYOUT.pending_file)) == (
        'sh -c \'test -f "$1" && cat "$1" || true\' sh /opt/ghosthands/.ghdeploy/pending.json'
    )
    assert rc.render(rc.tail_file(LAYOUT.history_file, 5)) == (
        'sh -c \'test -f "$1" && tail -n "$2" "$1" || true\' sh /opt/ghosthands/.ghdeploy/history.jsonl 5'
    )
    assert rc.render(rc.remove_file(LAYOUT.pending_file)) == "rm -f -- /opt/ghosthands/.ghdeploy/pending.json"
    assert rc.render(rc.remove_dir(DOCKER_CONFIG)) == f"rm -rf -- {DOCKER_CONFIG}"


def test_docker_query_strings() -> None:
    assert rc.render(rc.image_inspect(["sha256:1"])) == "docker image inspect sha256:1"
    assert rc.render(rc.stop_container("gh-worker-7", 35)) == "docker stop -t 35 gh-worker-7"


# --- quoting: hostile values stay single words -------------------------------------------------


def _spec(tmp_path: Path | None = None) -> ContainerSpec:
    marker = f"{tmp_path}/pwned" if tmp_path else "/tmp/x"
    labels = {
        "gh.role": "targeted-worker",
        "gh.status_port": "3201",
        "gh.note": f'it\'s a "worker" $(touch {marker}) `touch {marker}`; x',
    }
    return ContainerSpec(
        name="gh-worker-7",
        options=[f"--label={k}={v}" for k, v in sorted(labels.items())]
        + ["--network=ghosthands_default", "--publish=127.0.0.1:3201:3101/tcp", "--restart=unless-stopped"],
        env=[
            "WORKER_ID=w7-env-only",
            "DATABASE_URL=postgres://u:s3cr3t-pa55@db/gh",
            "API_TOKEN=tok-XYZ-123",
            "PEM_KEY=-----BEGIN KEY-----\nc2VjcmV0LXBlbQ==\n-----END KEY-----\n",
            "QUOTED=it's $(touch " + marker + ") `x`",
        ],
        labels=labels,
        cmd=["node", "worker.js", "--id", "7"],
    )


def _all_builders() -> list[list[str]]:
    odd = rc.RemoteLayout("/opt/gh apps/$(id)", "/opt/gh apps/$(id)/docker-compose.prod.yml")
    return [
        rc.preflight(odd),
        rc.compose_pull(odd, IMAGE, EVIL, [EVIL]),
        rc.compose_up(odd, EVIL, [EVIL]),
        rc.compose_stop_rm(odd, IMAGE, EVIL, 1),
        rc.write_registry_auth(EVIL, EVIL),
        rc.create_container(odd, _spec(), EVIL, True),
        rc.restore_container(EVIL, True),
        rc.drop_backup(EVIL),
        rc.connect_network(EVIL, ["--alias=" + EVIL, EVIL]),
        rc.acquire_lock(odd),
        rc.read_lock(odd),
        rc.release_lock(odd),
        rc.append_file(EVIL, EVIL),
        rc.write_file(EVIL, EVIL),
        rc.read_file(EVIL),
        rc.tail_file(EVIL, 3),
        rc.remove_dir(EVIL),
    ]


@pytest.mark.parametrize("argv", _all_builders())
def test_render_round_trips(argv: list[str]) -> None:
    assert shlex.split(rc.render(argv)) == argv


def test_create_container_quotes_the_hostile_label_as_one_word() -> None:
    spec = _spec()
    argv = rc.create_container(LAYOUT, spec, IMAGE, True)
    rendered = rc.render(argv)
    assert shlex.split(rendered) == argv
    label_arg = f"--label=gh.note={spec.labels['gh.note']}"
    assert argv.count(label_arg) == 1
    assert rendered.count("$(touch /tmp/x)") == 1  # only inside that quoted word


def test_create_container_keeps_env_values_out_of_argv() -> None:
    spec = _spec()
    rendered = rc.render(rc.create_container(LAYOUT, spec, IMAGE, True))
    for entry in spec.env:
        assert entry.split("=", 1)[1] not in rendered
    # the multi-line value is passed by name only
    assert "-e PEM_KEY" in rendered


def test_create_container_argv() -> None:
    argv = rc.create_container(LAYOUT, _spec(), IMAGE, False)
    env_file = "/opt/ghosthands/.ghdeploy/env-gh-worker-7"
    assert argv[3:9] == [
        "sh",
        "/opt/ghosthands/.ghdeploy",
        "gh-worker-7",
        "gh-worker-7.ghdeploy-backup",
        env_file,
        "0",
    ]
    create = argv[9:]
    assert create[:4] == ["docker", "create", "--name", "gh-worker-7"]
    assert f"--env-file={env_file}" in create
    assert create[-6:] == ["--", IMAGE, "node", "worker.js", "--id", "7"]


# --- running the scripts for real -----------------------------------------------------------

FAKE_DOCKER = """\
#!{python}
import json, os, stat, sys
args = sys.argv[1:]
entry = {{"argv": args}}
if "--password-stdin" in args:
    entry["stdin"] = sys.stdin.read()
    entry["docker_config"] = os.environ.get("DOCKER_CONFIG")
for a in args:
    if a.startswith("--env-file="):
        path = a.split("=", 1)[1]
        entry["env_file"] = open(path).read()
        entry["env_file_mode"] = stat.S_IMODE(os.stat(path).st_mode)
if args[:1] == ["create"]:
    entry["env"] = {{args[i + 1]: os.environ.get(args[i + 1]) for i, a in enumerate(args) if a == "-e"}}
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
fail = os.environ.get("FAKE_DOCKER_FAIL", "")
if args[:2] == ["compose", "version"]:
    if fail == "compose":
        sys.exit(1)
    print("2.29.1")
elif args[:1] == ["info"]:
    sys.exit(1 if fail == "info" else 0)
elif args[:1] == ["ps"]:
    print(os.environ.get("FAKE_DOCKER_PS", "").replace(",", "\\n"))
elif args[:2] == ["inspect", "--format"]:
    print("true" if args[-1] in os.environ.get("FAKE_DOCKER_RUNNING", "").split(",") else "false")
elif args[:1] == ["create"]:
    sys.exit(int(os.environ.get("FAKE_DOCKER_CREATE_RC", "0")))
elif args[:2] == ["container", "inspect"]:
    sys.exit(0 if os.environ.get("FAKE_DOCKER_HAS_BACKUP") == "1" else 1)
"""


class FakeHost:
    """A local stand-in for a host: runs rendered commands with `sh -c`, as sshd would."""

    def __init__(self, tmp_path: Path, with_docker: bool = True) -> None:
        self.cwd = tmp_path  # where an injected `touch pwned` would land
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "docker.log"
        self.env = {"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", "FAKE_DOCKER_LOG": str(self.log)}
        if with_docker:
            docker = self.bin / "docker"
            docker.write_text(FAKE_DOCKER.format(python=sys.executable))
            docker.chmod(0o755)

    def run(self, argv: list[str], stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", rc.render(argv)],
            input=stdin.decode(),
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.cwd,
            timeout=30,
            check=False,
        )

    def docker_calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[rc.RemoteLayout]:
    app = tmp_path / "opt" / "gh app $(touch pwned)"
    app.mkdir(parents=True)
    (app / "docker-compose.prod.yml").write_text("services: {}\n")
    yield rc.RemoteLayout(str(app), str(app / "docker-compose.prod.yml"))
    # the directory name is hostile: if any script let the shell expand it, this file appears
    assert not (tmp_path / "pwned").exists()


def test_acquire_lock_creates_private_lock_with_holder(host: FakeHost, layout: rc.RemoteLayout) -> None:
    holder = {"operator": "alice@laptop", "action": "deploy", "tag": "v1"}
    result = host.run(rc.acquire_lock(layout), json.dumps(holder).encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lock_dir = Path(layout.lock_dir)
    assert _mode(Path(layout.state_dir)) == 0o700
    assert _mode(lock_dir) == 0o700
    assert _mode(lock_dir / "info.json") == 0o600
    assert json.loads((lock_dir / "info.json").read_text()) == holder


def test_second_acquire_exits_75_and_prints_the_holder(host: FakeHost, layout: rc.RemoteLayout) -> None:
    first = {"operator": "alice@laptop", "tag": "v1"}
    assert host.run(rc.acquire_lock(layout), json.dumps(first).encode()).returncode == 0
    second = host.run(rc.acquire_lock(layout), json.dumps({"operator": "bob@desk"}).encode())
    assert second.returncode == rc.LOCK_HELD_CODE == 75
    assert json.loads(second.stdout) == first
    # the loser did not overwrite the holder's record
    assert json.loads((Path(layout.lock_dir) / "info.json").read_text()) == first


def test_read_lock_release_then_acquire_again(host: FakeHost, layout: rc.RemoteLayout) -> None:
    free = host.run(rc.read_lock(layout))
    assert (free.returncode, free.stdout) == (0, "")
    holder = {"operator": "alice@laptop"}
    assert host.run(rc.acquire_lock(layout), json.dumps(holder).encode()).returncode == 0
    held = host.run(rc.read_lock(layout))
    assert held.returncode == 0 and json.loads(held.stdout) == holder
    assert host.run(rc.release_lock(layout)).returncode == 0
    assert not Path(layout.lock_dir).exists()
    assert host.run(rc.read_lock(layout)).stdout == ""
    assert host.run(rc.acquire_lock(layout), b'{"operator": "bob"}').returncode == 0


def test_read_lock_without_info_prints_empty_object(host: FakeHost, layout: rc.RemoteLayout) -> None:
    Path(layout.lock_dir).mkdir(parents=True)
    result = host.run(rc.read_lock(layout))
    assert result.returncode == 0
    assert json.loads(result.stdout) == {}


def test_lock_is_exclusive_under_concurrency(host: FakeHost, layout: rc.RemoteLayout) -> None:
    procs = [
        subprocess.Popen(
            ["/bin/sh", "-c", rc.render(rc.acquire_lock(layout))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=host.env,
            cwd=host.cwd,
        )
        for _ in range(12)
    ]
    outcomes = []
    for i, p in enumerate(procs):
        p.communicate(json.dumps({"n": i}).encode(), timeout=30)
        outcomes.append(p.returncode)
    assert sorted(outcomes) == [0] + [75] * 11
    winner = outcomes.index(0)
    assert json.loads((Path(layout.lock_dir) / "info.json").read_text()) == {"n": winner}


def test_lock_never_shows_without_its_holder_record(host: FakeHost, layout: rc.RemoteLayout) -> None:
    # A deploy whose record is still on the wire has not taken the lock yet: a loser never reads
    # an empty holder, and whoever has sent its whole record first wins.
    slow = subprocess.Popen(
        ["/bin/sh", "-c", rc.render(rc.acquire_lock(layout))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=host.env,
        cwd=host.cwd,
    )
    assert slow.stdin is not None
    slow.stdin.write(b'{"operator": "slow')
    slow.stdin.flush()
    fast = host.run(rc.acquire_lock(layout), b'{"operator": "fast"}')
    assert fast.returncode == 0, fast.stderr
    out, _ = slow.communicate(b'@laptop"}', timeout=30)
    assert slow.returncode == 75 and json.loads(out) == {"operator": "fast"}
    assert json.loads(host.run(rc.read_lock(layout)).stdout) == {"operator": "fast"}
    assert sorted(p.name for p in Path(layout.state_dir).iterdir()) == ["lock"]  # no record file left behind


def test_release_with_an_id_frees_only_that_lock(host: FakeHost, layout: rc.RemoteLayout) -> None:
    assert host.run(rc.release_lock(layout, "0123456789abcdef")).returncode == 0  # no lock: nothing to do
    assert host.run(rc.acquire_lock(layout), b'{"id": "fedcba9876543210", "operator": "bob"}').returncode == 0
    other = host.run(rc.release_lock(layout, "0123456789abcdef"))
    assert other.returncode == rc.LOCK_HELD_CODE
    assert json.loads(host.run(rc.read_lock(layout)).stdout)["operator"] == "bob"
    assert host.run(rc.release_lock(layout, "fedcba9876543210")).returncode == 0
    assert not Path(layout.lock_dir).exists()


def test_append_file_creates_private_dir_and_file(host: FakeHost, tmp_path: Path) -> None:
    directory = tmp_path / "state $(touch pwned)" / "nested"
    path = directory / "history.jsonl"
    assert host.run(rc.append_file(str(directory), str(path)), b'{"n": 1}\n').returncode == 0
    assert host.run(rc.append_file(str(directory), str(path)), b'{"n": 2}\n').returncode == 0
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n'
    assert _mode(directory) == 0o700
    assert _mode(path) == 0o600
    assert not (tmp_path / "pwned").exists()
    tail = host.run(rc.tail_file(str(path), 1))
    assert tail.stdout == '{"n": 2}\n'


def test_write_file_replaces_atomically_and_privately(host: FakeHost, tmp_path: Path) -> None:
    directory = tmp_path / "state"
    path = directory / "pending.json"
    assert host.run(rc.write_file(str(directory), str(path)), b'{"v": 1, "long": "xxxxxxxx"}').returncode == 0
    assert host.run(rc.write_file(str(directory), str(path)), b'{"v": 2}').returncode == 0
    assert path.read_text() == '{"v": 2}'
    assert _mode(directory) == 0o700
    assert _mode(path) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["pending.json"]  # no .tmp left behind
    assert host.run(rc.read_file(str(path))).stdout == '{"v": 2}'
    assert host.run(rc.remove_file(str(path))).returncode == 0
    missing = host.run(rc.read_file(str(path)))
    assert (missing.returncode, missing.stdout) == (0, "")
    assert host.run(rc.tail_file(str(path), 3)).returncode == 0


def test_registry_auth_is_written_from_stdin_and_leftovers_go(host: FakeHost, tmp_path: Path) -> None:
    state = tmp_path / "state"
    leftover = state / "docker-config-killedrun"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text('{"auths": {"x": {"auth": "old-token"}}}')
    config_dir = state / "docker-config-1"
    payload = '{"auths": {"reg": {"auth": "QVdTOnRva2Vu"}}}'
    result = host.run(rc.write_registry_auth(str(state), str(config_dir)), payload.encode())
    assert result.returncode == 0, result.stderr
    assert (config_dir / "config.json").read_text() == payload
    assert _mode(config_dir) == 0o700 and _mode(config_dir / "config.json") == 0o600
    assert not leftover.exists()
    assert host.docker_calls() == []  # no `docker login`: nothing reaches a credential store


class _LoginRemote:
    """A Remote that records what ensure_image sends: the image is missing, then pulled."""

    def __init__(self) -> None:
        self.host = Host("10.0.0.5", "ubuntu")
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.pulled = False

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        self.calls.append((argv, stdin))
        if argv[:3] == ["docker", "image", "inspect"]:
            if not self.pulled:
                return CommandResult(1, "[]", "No such image")
            return CommandResult(0, json.dumps([{"Id": "sha256:new", "RepoDigests": [IMAGE]}]), "")
        if "pull" in argv:
            self.pulled = True
        return CommandResult(0, "", "")

    check = run

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
        return None  # no Engine API: the docker CLI's commands are what this fake answers

    def http_client(self, timeout: float = 5.0) -> Client:
        raise AssertionError("ensure_image needs no HTTP")


def test_deploy_login_puts_the_token_on_stdin_not_argv() -> None:
    from ghdeploy.engine.host import Operation, Target, ensure_image
    from ghdeploy.progress import NullReporter
    from ghdeploy.registry import RegistryAuth

    token = "SECRET-ECR-TOKEN-0123456789"
    op = Operation(
        layout=LAYOUT,
        reporter=NullReporter(),
        api_port=3100,
        worker_port=3101,
        health_timeout=1,
        drain_timeout=1,
        stop_timeout=1,
        auth=RegistryAuth(REGISTRY, "AWS", token),
    )
    remote = _LoginRemote()
    assert ensure_image(op, remote, Target(ref=IMAGE, label="ghosthands:v1", digest=DIGEST)) == "sha256:new"
    for argv, _ in remote.calls:
        assert token not in rc.render(argv)
    writes = [(argv, stdin) for argv, stdin in remote.calls if argv[:2] == ["sh", "-c"] and "config.json" in argv[2]]
    assert len(writes) == 1
    argv, stdin = writes[0]
    assert stdin is not None
    auths = json.loads(stdin)["auths"]
    assert base64.b64decode(auths[REGISTRY]["auth"]).decode() == f"AWS:{token}"
    config_dir = argv[-1]
    assert config_dir.startswith(LAYOUT.state_dir + "/docker-config-")
    # the throw-away credentials are used by the pull (of the app's services only) and removed afterwards
    pulls = [argv for argv, _ in remote.calls if "pull" in argv]
    assert (
        pulls and pulls[0][0:2] == ["env", f"DOCKER_CONFIG={config_dir}"] and pulls[0][-3:] == ["--", "api", "worker"]
    )
    assert (rc.remove_dir(config_dir), None) in remote.calls


def test_preflight_passes_and_prints_compose_version(host: FakeHost, layout: rc.RemoteLayout) -> None:
    result = host.run(rc.preflight(layout))
    assert (result.returncode, result.stdout.strip()) == (0, "2.29.1")


def test_preflight_missing_app_dir_and_compose_file(host: FakeHost, tmp_path: Path) -> None:
    missing_dir = rc.RemoteLayout(str(tmp_path / "nope"), str(tmp_path / "nope" / "c.yml"))
    assert host.run(rc.preflight(missing_dir)).returncode == 13
    (tmp_path / "app").mkdir()
    missing_file = rc.RemoteLayout(str(tmp_path / "app"), str(tmp_path / "app" / "c.yml"))
    assert host.run(rc.preflight(missing_file)).returncode == 14


def test_preflight_docker_failures(host: FakeHost, layout: rc.RemoteLayout) -> None:
    assert host.run(rc.preflight(layout), FAKE_DOCKER_FAIL="compose").returncode == 11
    assert host.run(rc.preflight(layout), FAKE_DOCKER_FAIL="info").returncode == 12


def test_preflight_without_docker(tmp_path: Path, layout: rc.RemoteLayout) -> None:
    (tmp_path / "bare-host").mkdir()
    bare = FakeHost(tmp_path / "bare-host", with_docker=False)
    (bare.bin / "sh").symlink_to("/bin/sh")
    bare.env["PATH"] = str(bare.bin)  # sh and nothing else: no docker anywhere
    assert bare.run(rc.preflight(layout)).returncode == 10


def test_create_container_for_real_carries_multiline_env_without_argv(
    host: FakeHost, layout: rc.RemoteLayout, tmp_path: Path
) -> None:
    from ghdeploy.container_spec import env_script

    spec = _spec(tmp_path)
    env_file = rc.env_file_path(layout, spec.name)
    argv = rc.create_container(layout, spec, IMAGE, True)
    result = host.run(argv, env_script(spec, env_file, "GHDEPLOY_ENV_x1").encode())
    assert result.returncode == 0, result.stderr
    calls = host.docker_calls()
    assert [c["argv"][:2] for c in calls] == [
        ["container", "inspect"],
        ["rename", "gh-worker-7"],
        ["create", "--name"],
    ]
    assert calls[1]["argv"] == ["rename", "gh-worker-7", "gh-worker-7.ghdeploy-backup"]
    create = calls[2]
    assert create["argv"] == argv[10:]  # exactly the docker create argv, nothing re-split or expanded
    single = [e for e in spec.env if "\n" not in e]
    assert create["env_file"] == "".join(f"{e}\n" for e in single)
    assert create["env_file_mode"] == 0o600
    pem = next(e for e in spec.env if e.startswith("PEM_KEY="))
    assert create["env"] == {"PEM_KEY": pem.split("=", 1)[1]}  # multi-line, exact, trailing newline too
    assert not Path(env_file).exists()  # secrets removed after the create
    assert not (tmp_path / "pwned").exists()


def test_create_container_failure_puts_the_old_one_back(host: FakeHost, layout: rc.RemoteLayout) -> None:
    from ghdeploy.container_spec import env_script

    spec = _spec()
    script = env_script(spec, rc.env_file_path(layout, spec.name), "GHDEPLOY_ENV_x2")
    result = host.run(rc.create_container(layout, spec, IMAGE, True), script.encode(), FAKE_DOCKER_CREATE_RC="125")
    assert result.returncode == 3
    calls = [c["argv"] for c in host.docker_calls()]
    assert calls[-3:] == [
        ["rm", "-f", "gh-worker-7"],
        ["rename", "gh-worker-7.ghdeploy-backup", "gh-worker-7"],
        ["start", "gh-worker-7"],
    ]
    assert not Path(rc.env_file_path(layout, spec.name)).exists()


def test_create_container_of_a_stopped_worker_does_not_start_the_old_one(
    host: FakeHost, layout: rc.RemoteLayout
) -> None:
    from ghdeploy.container_spec import env_script

    spec = _spec()
    script = env_script(spec, rc.env_file_path(layout, spec.name), "GHDEPLOY_ENV_x3")
    assert (
        host.run(rc.create_container(layout, spec, IMAGE, False), script.encode(), FAKE_DOCKER_CREATE_RC="1").returncode
        == 3
    )
    assert not any(c["argv"][0] == "start" for c in host.docker_calls())


def test_restore_and_drop_backup(host: FakeHost) -> None:
    assert host.run(rc.restore_container("gh-worker-7", True)).returncode == 0  # no backup: nothing to do
    assert [c["argv"][0] for c in host.docker_calls()] == ["container"]
    assert host.run(rc.restore_container("gh-worker-7", False), FAKE_DOCKER_HAS_BACKUP="1").returncode == 0
    assert [c["argv"] for c in host.docker_calls()][-2:] == [
        ["rm", "-f", "gh-worker-7"],
        ["rename", "gh-worker-7.ghdeploy-backup", "gh-worker-7"],
    ]
    assert host.run(rc.drop_backup("gh-worker-7"), FAKE_DOCKER_HAS_BACKUP="1").returncode == 0
    assert host.docker_calls()[-1]["argv"] == ["rm", "-f", "gh-worker-7.ghdeploy-backup"]


def test_compose_stop_rm_honours_the_stop_timeout(host: FakeHost, layout: rc.RemoteLayout) -> None:
    assert host.run(rc.compose_stop_rm(layout, IMAGE, "worker", 47)).returncode == 0
    calls = [c["argv"] for c in host.docker_calls()]
    assert calls == [
        ["compose", "-f", layout.compose_file, "stop", "-t", "47", "--", "worker"],
        ["compose", "-f", layout.compose_file, "rm", "--force", "--", "worker"],
    ]


def test_append_after_a_half_written_line_starts_a_new_line(host: FakeHost, tmp_path: Path) -> None:
    from ghdeploy.hostops import parse_history

    directory = tmp_path / "state"
    path = directory / "history.jsonl"
    assert host.run(rc.append_file(str(directory), str(path)), b'{"n": 1}\n').returncode == 0
    with open(path, "a") as handle:
        handle.write('{"n": 2, "result": "succ')  # the disk filled up mid-line
    assert host.run(rc.append_file(str(directory), str(path)), b'{"n": 3}\n').returncode == 0
    records, warnings = parse_history(path.read_text())
    assert [r["n"] for r in records] == [1, 3]  # the record after the broken line is kept
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_the_lock_is_stamped_with_the_hosts_clock(host: FakeHost, layout: rc.RemoteLayout) -> None:
    from ghdeploy import locks

    info = locks.lock_info("alice@laptop", "deploy", "v1", 'msg "since": "@host-now@"')
    assert info.since == rc.HOST_NOW  # the laptop does not say when
    (host.bin / "date").write_text("#!/bin/sh\necho 2031-01-02T03:04:05Z\n")  # the host's clock
    (host.bin / "date").chmod(0o755)
    assert host.run(rc.acquire_lock(layout), lock_text(info).encode()).returncode == 0
    held = json.loads(host.run(rc.read_lock(layout)).stdout)
    assert held["since"] == "2031-01-02T03:04:05Z"
    assert held["message"] == 'msg "since": "@host-now@"'  # only the field, never text in a value


class _ShRemote:
    """A Remote over FakeHost: the real scripts, run locally."""

    def __init__(self, host: FakeHost) -> None:
        self.fake = host
        self.host = Host("10.0.0.9", "ubuntu")

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        proc = self.fake.run(argv, stdin or b"")
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    check = run

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
        return None  # no Engine API: the docker CLI's commands are what this fake answers

    def http_client(self, timeout: float = 5.0) -> Client:
        raise AssertionError("the lock scripts need no HTTP")


def test_lock_release_removes_only_the_lock_it_showed(
    host: FakeHost, layout: rc.RemoteLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghdeploy import locks
    from ghdeploy.commands import lock as lock_command

    remote = _ShRemote(host)
    shown = {"id": "aaaaaaaaaaaaaaaa", "operator": "alice", "since": "2030-01-01T00:00:00Z"}
    # alice's deploy ended and bob's took the lock after `lock release` read alice's record
    assert locks.acquire(remote, layout, LockInfo(id="bbbbbbbbbbbbbbbb", operator="bob", since=rc.HOST_NOW)) is None
    monkeypatch.setattr(lock_command, "layout_of", lambda config: layout)
    monkeypatch.setattr(lock_command.locks, "read", lambda conn, lay: LockInfo.from_dict(shown))
    monkeypatch.setattr(lock_command, "per_host", lambda config, opts, reporter, fn, on_error, **_: [fn(remote)])
    (row,) = lock_command.lock_release(None, None, None)  # type: ignore[arg-type]
    assert row.released is False
    assert json.loads(host.run(rc.read_lock(layout)).stdout)["operator"] == "bob"
    monkeypatch.setattr(lock_command.locks, "read", lambda conn, lay: LockInfo(id="bbbbbbbbbbbbbbbb", operator="bob"))
    (row,) = lock_command.lock_release(None, None, None)  # type: ignore[arg-type]
    assert row.released is True and host.run(rc.read_lock(layout)).stdout == ""


def test_ctrl_c_while_a_host_takes_the_lock_leaves_no_lock(
    host: FakeHost, layout: rc.RemoteLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghdeploy import locks
    from ghdeploy.engine import fleet as fleet_mod
    from ghdeploy.progress import NullReporter

    remote = _ShRemote(host)
    real_acquire = locks.acquire

    def interrupted_acquire(conn: Any, lay: rc.RemoteLayout, info: LockInfo) -> None:
        real_acquire(conn, lay, info)  # the host took the lock...
        raise KeyboardInterrupt  # ...and Ctrl-C arrived before we heard so

    monkeypatch.setattr(fleet_mod, "layout_of", lambda config: layout)
    monkeypatch.setattr(fleet_mod, "ssh_settings", lambda config, accept: None)
    monkeypatch.setattr(fleet_mod, "connect_all", lambda hosts, settings, reporter: ({"h1": remote}, {}))
    monkeypatch.setattr(fleet_mod, "preflight_hosts", lambda *args, **kwargs: {})
    monkeypatch.setattr(fleet_mod.locks, "acquire", interrupted_acquire)
    info = locks.lock_info("alice@laptop", "deploy", "v1", None)
    with pytest.raises(KeyboardInterrupt):
        fleet_mod.open_fleet(None, [Host("h1")], fleet_mod.HostOptions(), NullReporter(), info)  # type: ignore[arg-type]
    assert host.run(rc.read_lock(layout)).stdout == ""  # released: not left behind unrecorded


def test_restore_all_backups_puts_each_back_started_as_its_replacement_was(host: FakeHost) -> None:
    names = "ghosthands-api-1,gh-worker-1,gh-worker-1.ghdeploy-backup,gh-worker-2.ghdeploy-backup"
    result = host.run(rc.restore_all_backups(), FAKE_DOCKER_PS=names, FAKE_DOCKER_RUNNING="gh-worker-1")
    assert result.returncode == 0, result.stderr
    calls = [c["argv"] for c in host.docker_calls() if c["argv"][0] in ("rm", "rename", "start")]
    assert calls == [
        ["rm", "-f", "gh-worker-1"],
        ["rename", "gh-worker-1.ghdeploy-backup", "gh-worker-1"],
        ["start", "gh-worker-1"],
        ["rm", "-f", "gh-worker-2"],
        ["rename", "gh-worker-2.ghdeploy-backup", "gh-worker-2"],
    ]


def test_append_then_remove_ends_pending_only_after_the_record_is_written(tmp_path: Path) -> None:
    """The real script, run by sh: the record appended, then pending.json removed; an append that
    fails (here the history path is a directory) leaves pending.json for the next deploy to find."""
    import subprocess

    state = tmp_path / "state"
    state.mkdir()
    history, pending = state / "history.jsonl", state / "pending.json"
    history.write_text('{"n": 1}')  # a last line cut short: ended before the new one
    pending.write_text("{}")
    argv = rc.append_file(str(state), str(history), str(pending))
    assert subprocess.run(argv, input=b'{"n": 2}\n', check=False).returncode == 0
    assert history.read_text() == '{"n": 1}\n{"n": 2}\n' and not pending.exists()
    broken = state / "broken"
    broken.mkdir()
    pending.write_text("{}")
    argv = rc.append_file(str(state), str(broken), str(pending))
    assert subprocess.run(argv, input=b'{"n": 3}\n', capture_output=True, check=False).returncode != 0
    assert pending.exists()
