"""`ghdeploy agent` running INSIDE a testbed host (issue 11).

The agent runs in the host's network namespace with the host's own /opt/ghosthands, its own
dockerd through DOCKER_HOST and its own hostname, and reaches the registry and moto across the
namespace boundary at 10.88.0.1, as an EC2 instance reaches ECR. The "laptop" side (push,
deploy, history, status) is the usual CLI in the root namespace.

h1 is used alone; the fleet tests use h2 and h3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Cli, busy, commit, host_http, make_broken, schema_errors

H1, H2, H3 = "root@10.77.1.2", "root@10.77.2.2", "root@10.77.3.2"
STATE = "/var/lib/ghtb/{name}/opt/.ghdeploy"


def new_commit(repo: Path, name: str) -> str:
    return commit(repo, name, {"VERSION": f"{name} {uuid.uuid4()}\n"})


def fix_broken(repo: Path) -> str:
    dockerfile = (repo / "Dockerfile").read_text().replace("ARG BROKEN=1", "ARG BROKEN=0")
    return commit(repo, "fixed", {"Dockerfile": dockerfile, "VERSION": f"fixed {uuid.uuid4()}\n"})


def push(cli: Cli) -> dict:
    """Build HEAD and push it as :<sha> and :latest (what CI does); return the push result."""
    proc = cli("--json", "deploy", "--push-only")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["push"]


def push_latest(cli: Cli) -> str:
    return push(cli)["digest"]


def commit_of(name: str) -> str:
    return json.loads(host_http(name, "/health/version"))["commit_sha"]


def host_aws_endpoint(testbed_env: dict[str, str]) -> str:
    """moto as the hosts reach it (scripts/testbed's relay on the registry's address)."""
    if testbed_env.get("GHTB_HOST_AWS_ENDPOINT_URL"):
        return testbed_env["GHTB_HOST_AWS_ENDPOINT_URL"]
    port = testbed_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[-1]
    return f"http://{testbed_env['ECR_REGISTRY'].split(':')[0]}:{port}"


class HostAgent:
    """Runs `python -m ghdeploy ... agent` inside testbed host `name`, as the systemd unit would."""

    def __init__(self, name: str, testbed_env: dict[str, str], tmp_path: Path, **config: str) -> None:
        self.name = name
        self.env_file = tmp_path / f"agent-{name}.env"
        settings = {
            "ECR_REGISTRY": testbed_env["ECR_REGISTRY"],
            "ECR_REPOSITORY": testbed_env["ECR_REPOSITORY"],
            "AWS_REGION": testbed_env["AWS_REGION"],
            "GHOSTHANDS_DIR": "/opt/ghosthands",
            "HEALTH_TIMEOUT": "8",
            **config,
        }
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        home = tmp_path / f"home-{name}"
        home.mkdir(exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            "NO_COLOR": "1",
            # What the instance role and the host's setup give a real agent:
            "AWS_ENDPOINT_URL": host_aws_endpoint(testbed_env),
            "AWS_ACCESS_KEY_ID": testbed_env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": testbed_env["AWS_SECRET_ACCESS_KEY"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "SSL_CERT_FILE": testbed_env["SSL_CERT_FILE"],
            "DOCKER_HOST": f"unix:///run/ghtb/{name}/docker.sock",
            # The testbed's registry is a stand-in, not the ECR endpoint the token names.
            "ECR_REGISTRY_OVERRIDE": testbed_env.get("ECR_REGISTRY_OVERRIDE", "1"),
        }

    def argv(self, *args: str) -> list[str]:
        # The host's network namespace, and a mount namespace made like the host's own (its
        # /opt/ghosthands) plus its own hostname, as every EC2 instance has. (The host's sshd mount
        # namespace also swaps /root, which would hide this machine's python, installed there.)
        script = 'mount --bind "$1" /opt/ghosthands && hostname "$2" && shift 2 && exec "$@"'
        return [
            "nsenter",
            f"--net=/run/netns/{self.name}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--uts",
            "sh",
            "-c",
            script,
            "sh",
            f"/var/lib/ghtb/{self.name}/opt",
            self.name,
            sys.executable,
            "-m",
            "ghdeploy",
            "--env-file",
            str(self.env_file),
            *args,
        ]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def once(self, code: int = 0) -> dict:
        proc = self("--json", "agent", "--once")
        assert proc.returncode == code, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
        doc = json.loads(proc.stdout)
        assert not schema_errors(doc), schema_errors(doc)
        return doc

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def lock_holder(name: str) -> str | None:
    info = Path(STATE.format(name=name)) / "lock" / "info.json"
    try:
        return json.loads(info.read_text()).get("operator")
    except (OSError, ValueError):
        return None


def last_record(cli: Cli, host: str) -> dict:
    doc = cli.json("history", "--host", host, "-n", "1")
    return doc["hosts"][0]["records"][-1]


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")


def test_once_deploys_new_latest_skips_a_broken_one_until_the_tag_moves(
    h1: Cli, app_repo: Path, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    new_commit(app_repo, "agent base")
    assert h1("deploy").returncode == 0  # what runs before the agent takes over
    agent = HostAgent("h1", testbed_env, tmp_path)
    idle = agent.once()
    assert (idle["action"], idle["reason"]) == ("none", "already running")

    # CI pushes a new :latest; the agent deploys it by digest.
    good = new_commit(app_repo, "agent good")
    digest = push_latest(h1)
    doc = agent.once()
    assert (doc["action"], doc["tag"], doc["digest"], doc["running"]) == ("deployed", "latest", digest, digest)
    assert doc["deploy"]["to"]["ref"].endswith(f"/ghosthands@{digest}")
    assert commit_of("h1") == good
    record = last_record(h1, H1)
    assert record["operator"] == "ghdeploy-agent@h1" and record["result"] == "succeeded"
    assert record["to"]["digest"] == digest

    # A broken :latest: rolled back, exit 1; then skipped (exit 0) while the tag stays there.
    make_broken(app_repo)
    broken = push_latest(h1)
    doc = agent.once(code=1)
    assert (doc["action"], doc["digest"], doc["running"]) == ("rolled back", broken, digest)
    assert commit_of("h1") == good
    doc = agent.once(code=0)
    assert (doc["action"], doc["digest"]) == ("skipped", broken)
    assert "waiting for latest to point at a new image" in doc["reason"]
    assert last_record(h1, H1)["result"] == "rolled back"  # no second attempt was recorded

    # A good image again: deployed.
    fixed = fix_broken(app_repo)
    fixed_digest = push_latest(h1)
    doc = agent.once()
    assert (doc["action"], doc["digest"]) == ("deployed", fixed_digest)
    assert commit_of("h1") == fixed

    # The laptop's status shows the agent, its tag, last poll and result.
    status = h1.json("status")["hosts"][0]["agent"]
    assert status["tag"] == "latest" and status["state"] == "stopped" and status["running"] is False
    assert status["last_result"]["action"] == "deployed"
    table = h1("status").stdout  # a table cell may wrap: look for its words
    assert "stopped" in table and "following" in table and ":latest" in table


def test_agent_and_laptop_share_the_host_lock(
    h1: Cli, app_repo: Path, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    new_commit(app_repo, "lock base")
    assert h1("deploy").returncode == 0
    agent = HostAgent("h1", testbed_env, tmp_path, DRAIN_TIMEOUT="30")

    # A laptop deploy holds the lock (its worker drains for a while): the agent skips, exit 3.
    new_commit(app_repo, "laptop deploy")
    busy("h1", 15)
    laptop = subprocess.Popen(
        [sys.executable, "-m", "ghdeploy", "deploy"],
        cwd=h1.cwd,
        env=h1.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: lock_holder("h1") not in (None, "ghdeploy-agent@h1"), 120, "the laptop's lock")
        holder = str(lock_holder("h1"))
        doc = agent.once(code=3)
        assert doc["action"] == "skipped" and holder in doc["reason"]
    finally:
        out, err = laptop.communicate(timeout=300)
    assert laptop.returncode == 0, err

    # The agent holds the lock (draining a busy worker): a laptop deploy exits 3 naming the agent.
    new_commit(app_repo, "agent's turn")
    pushed = push(h1)
    busy("h1", 15)
    running = agent.start("--json", "agent", "--once")
    try:
        wait_until(lambda: lock_holder("h1") == "ghdeploy-agent@h1", 120, "the agent's lock")
        proc = h1("deploy", "--deploy-only", "--tag", pushed["tag"])
        assert proc.returncode == 3, proc.stderr
        assert "ghdeploy-agent@h1" in proc.stderr
    finally:
        out, err = running.communicate(timeout=300)
    assert running.returncode == 0, err
    doc = json.loads(out)
    assert (doc["action"], doc["digest"]) == ("deployed", pushed["digest"])
    assert lock_holder("h1") is None


def test_long_running_agent_follows_pushes_and_stops_cleanly_on_sigterm(
    h1: Cli, app_repo: Path, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    new_commit(app_repo, "loop base")
    assert h1("deploy").returncode == 0
    agent = HostAgent("h1", testbed_env, tmp_path, DRAIN_TIMEOUT="10")
    proc = agent.start("--json", "agent", "--interval", "5")
    events: list[dict] = []
    log: list[str] = []  # the agent's progress on stderr, read as it comes (a full pipe would block it)
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def next_event(timeout: float = 120) -> dict:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"agent exited: {proc.wait(timeout)} {''.join(log)}"
        events.append(json.loads(line))
        assert not schema_errors(events[-1], "agent_event"), schema_errors(events[-1], "agent_event")
        return events[-1]

    def next_change(timeout: float = 120) -> dict:
        """The next event that is not a poll with nothing to do ('already running' after a deploy)."""
        while True:
            event = next_event(timeout)
            if not (event["event"] == "poll" and event["action"] == "none"):
                return event

    try:
        assert next_event()["event"] == "started"
        first = next_event()
        assert (first["event"], first["action"]) == ("poll", "none")
        status = h1.json("status")["hosts"][0]["agent"]
        assert status["running"] is True and status["tag"] == "latest"

        # A push is picked up by the next poll (within the interval) and deployed.
        good = new_commit(app_repo, "loop good")
        digest = push_latest(h1)
        pushed = time.monotonic()
        event = next_change()
        assert (event["action"], event["digest"]) == ("deployed", digest)
        assert commit_of("h1") == good
        # A figure for the record, not an assertion (the machine is shared).
        print(f"\nagent --interval 5: push ended -> host healthy on the new image: {time.monotonic() - pushed:.1f}s")

        # SIGTERM while the agent drains a busy worker: it stops at a safe point, host healthy.
        new_commit(app_repo, "loop interrupted")
        busy("h1", 30)
        seen = len(log)  # the first deploy drained too: look only at what comes now
        push_latest(h1)
        wait_until(lambda: any("draining" in line for line in log[seen:]), 60, "the agent draining the busy worker")
        proc.send_signal(signal.SIGTERM)
        event = next_change()
        assert event["event"] == "poll" and event["action"] in ("rolled back", "deployed")
        assert next_event()["event"] == "stopped"
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    if event["action"] == "rolled back":
        assert commit_of("h1") == good and "interrupted" in event["reason"]
    assert host_http("h1", "/health")
    assert lock_holder("h1") is None
    assert not (Path(STATE.format(name="h1")) / "pending.json").exists()
    assert h1.json("status")["hosts"][0]["agent"]["state"] == "stopped"


# --- fleet --------------------------------------------------------------------------------------


@pytest.fixture
def fleet(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h2", "h3")
    return cli_factory(EC2_HOST=f"{H2},{H3}", HEALTH_TIMEOUT="8")


def when(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_fleet_table_one_host_at_a_time_and_a_bad_digest_stops_everywhere(
    fleet: Cli, app_repo: Path, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    new_commit(app_repo, "fleet base")
    assert fleet("deploy").returncode == 0
    table = f"ghdeploy-fleet-{uuid.uuid4().hex[:8]}"
    h2 = HostAgent("h2", testbed_env, tmp_path, AGENT_FLEET_TABLE=table)
    h3 = HostAgent("h3", testbed_env, tmp_path, AGENT_FLEET_TABLE=table)
    made = h2("--json", "agent", "init-table")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["created"] is True
    assert json.loads(h3("--json", "agent", "init-table").stdout)["created"] is False

    # A broken :latest, seen by both at once: one host tries it and rolls back, the other never does.
    before = {h: last_record(fleet, h) for h in (H2, H3)}
    make_broken(app_repo)
    broken = push_latest(fleet)
    runs = {name: agent.start("--json", "agent", "--once") for name, agent in (("h2", h2), ("h3", h3))}
    docs = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        docs[name] = (run.returncode, json.loads(out), err)
    actions = sorted((code, doc["action"]) for code, doc, _ in docs.values())
    assert actions == [(0, "skipped"), (1, "rolled back")], docs
    skipper = next(name for name, (code, _, _) in docs.items() if code == 0)
    assert "fleet table" in docs[skipper][1]["reason"] and docs[skipper][1]["digest"] == broken
    skipper_host = H2 if skipper == "h2" else H3
    assert last_record(fleet, skipper_host) == before[skipper_host]  # it never tried

    # A good :latest: both deploy it, one after the other (their switches never overlap).
    fix_broken(app_repo)
    good = push_latest(fleet)
    runs = {name: agent.start("--json", "agent", "--once") for name, agent in (("h2", h2), ("h3", h3))}
    for run in runs.values():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert json.loads(out)["action"] == "deployed", out
    records = sorted((last_record(fleet, h) for h in (H2, H3)), key=lambda r: r["started"])
    assert all(r["to"]["digest"] == good and r["result"] == "succeeded" for r in records)
    first, second = records
    assert when(first["finished"]) <= when(second["started"]), records
    print(
        f"\nfleet switch timeline: {first['operator']} {first['started']} -> {first['finished']}; "
        f"{second['operator']} {second['started']} -> {second['finished']}"
    )
