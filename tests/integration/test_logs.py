"""`ghdeploy logs` against the testbed: three hosts deployed for real, lines written into the
containers' own stdout (as the app would), read back through the real CLI over SSH."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, commit, host_docker, reset_host

NAMES = ("h1", "h2", "h3")
LABEL = {ns: f"root@10.77.{ns[1:]}.2" for ns in NAMES}


@pytest.fixture(scope="module")
def fleet(testbed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """h1..h3 running one release of the sample app (deployed by ghdeploy itself)."""
    import os
    import shutil

    base = tmp_path_factory.mktemp("logs")
    repo = base / "app"
    sample = Path(testbed_env["GHTB_SAMPLE_APP"])
    subprocess.run(["git", "clone", "-q", str(sample), str(repo)], check=True)
    for item in sample.iterdir():
        if item.name != ".git" and not (repo / item.name).exists():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, repo / item.name)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("EC2_", "ECR_", "IMAGE_TAG", "GH_", "ASG_", "SSH_"))
    }
    env.update({k: v for k, v in testbed_env.items() if not k.startswith("GHTB_")})
    (base / "home").mkdir()
    env.update(
        HOME=str(base / "home"),
        NO_COLOR="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        AWS_EC2_METADATA_DISABLED="true",
        ECR_REGISTRY_OVERRIDE="1",  # the testbed's registry is a stand-in for ECR (see conftest.base_env)
        EC2_HOST=",".join(LABEL.values()),
    )
    cli = Cli(cwd=repo, env=env)
    for ns in NAMES:
        reset_host(ns)
    commit(repo, "logs v1")
    proc = cli("deploy", "--batch", "3")
    assert proc.returncode == 0, proc.stderr
    yield cli
    for ns in NAMES:
        reset_host(ns)


def say(ns: str, text: str, service: str = "api") -> None:
    """A line on the container's own stdout, exactly as if the app printed it."""
    host_docker(ns, "exec", f"ghosthands-{service}-1", "sh", "-c", 'echo "$1" > /proc/1/fd/1', "sh", text)


def test_lines_from_every_host_merged_in_time_order(fleet: Cli) -> None:
    # Written one after the other across the hosts (one clock: the hosts are namespaces).
    order = [("h2", "api"), ("h1", "worker"), ("h3", "api"), ("h1", "api"), ("h2", "worker")]
    for i, (ns, service) in enumerate(order):
        say(ns, f"merge-mark {i} from {ns}", service)
    proc = fleet("logs", "--grep", "merge-mark")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split("| ", 1)[1] for line in lines] == [
        f"merge-mark {i} from {ns}" for i, (ns, _) in enumerate(order)
    ]
    # host and service prefixes, aligned: every '|' in the same column
    assert lines[0].startswith(f"{LABEL['h2']} api    | ")
    assert lines[1].startswith(f"{LABEL['h1']} worker | ")
    assert len({line.index("|") for line in lines}) == 1

    everything = fleet("logs")
    assert everything.returncode == 0
    for ns in NAMES:
        for service in ("api", "worker"):
            assert any(line.startswith(f"{LABEL[ns]} {service}") for line in everything.stdout.splitlines())


def test_since_service_tail_and_json(fleet: Cli) -> None:
    say("h3", "since-old")
    time.sleep(1.1)
    cut = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.1)
    say("h3", "since-new")
    say("h3", "since-worker", "worker")
    proc = fleet("logs", "--since", cut, "--host", LABEL["h3"])
    texts = [line.split("| ", 1)[1] for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and texts == ["since-new", "since-worker"]

    only = fleet("logs", "--since", cut, "--service", "worker", "--host", LABEL["h3"])
    assert [line.split("| ", 1)[1] for line in only.stdout.splitlines()] == ["since-worker"]

    doc = fleet("--json", "logs", "--since", cut)
    rows = [json.loads(line) for line in doc.stdout.splitlines()]
    assert [(r["host"], r["service"], r["line"]) for r in rows] == [
        (LABEL["h3"], "api", "since-new"),
        (LABEL["h3"], "worker", "since-worker"),
    ]
    assert all(r["time"] >= cut[:19] for r in rows)

    say("h1", "tail-a")
    say("h1", "tail-b")
    tail = fleet("logs", "-n", "1", "--service", "api", "--host", LABEL["h1"])
    assert tail.stdout.splitlines() == [f"{LABEL['h1']} api    | tail-b"]

    bad = fleet("logs", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    none = fleet("logs", "--service", "nosuch")
    assert none.returncode == 2 and "no container for nosuch" in none.stderr


def test_targeted_workers_with_service_targeted(fleet: Cli) -> None:
    image = host_docker("h2", "inspect", "--format", "{{.Config.Image}}", "ghosthands-api-1")
    host_docker(
        "h2", "run", "-d", "--name", "gh-worker-logs1", "--label", "gh.role=targeted-worker",
        "-e", "GH_WORKER_PORT=3109", image, "worker",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "listening" not in host_docker("h2", "logs", "gh-worker-logs1") + host_docker_err(
            "h2", "gh-worker-logs1"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc = fleet("logs", "--service", "targeted")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines and all(line.startswith(f"{LABEL['h2']} gh-worker-logs1 |") for line in lines)
        assert any("listening on :3109" in line for line in lines)
        # by default only the compose services
        assert "gh-worker-logs1" not in fleet("logs").stdout
    finally:
        host_docker("h2", "rm", "-f", "gh-worker-logs1")


def host_docker_err(ns: str, name: str) -> str:
    proc = subprocess.run(
        ["docker", "-H", f"unix:///run/ghtb/{ns}/docker.sock", "logs", name], capture_output=True, text=True
    )
    return proc.stderr


class Follower:
    """`ghdeploy logs -f` running in the background; its stdout and stderr read as they come."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ghdeploy", "logs", "-f", *args],
            cwd=cli.cwd,
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout and self.proc.stderr
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err.append), daemon=True).start()

    @staticmethod
    def _pump(stream, put) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line with {text!r}; stderr: {self.err}"
            try:
                line = self.out.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line

    def wait_err(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                if text in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"stderr never said {text!r}: {self.err}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


def veth(ns: str, state: str) -> None:
    subprocess.run(["ip", "link", "set", f"veth-{ns}", state], check=True)


def test_follow_keeps_streaming_when_a_host_drops_out(fleet: Cli) -> None:
    follower = Follower(fleet, "-n", "0", "--grep", "follow-mark")
    try:
        # Lines arrive while following, from every host.
        for ns in NAMES:
            deadline = time.monotonic() + 30
            while True:  # the first lines may be written before that host's stream started
                say(ns, f"follow-mark hello {ns}")
                try:
                    follower.wait_for(f"follow-mark hello {ns}", timeout=1)
                    break
                except AssertionError:
                    assert time.monotonic() < deadline, follower.err
        # A container that restarts (or a deploy replaces) is followed again, from where it was.
        say("h3", "follow-mark pre-restart")
        follower.wait_for("follow-mark pre-restart")
        host_docker("h3", "restart", "-t", "1", "ghosthands-api-1")
        follower.wait_err(f"{LABEL['h3']} api: following", timeout=40)
        say("h3", "follow-mark after restart")
        assert follower.wait_for("follow-mark after restart").startswith(f"{LABEL['h3']} api ")
        assert len([line for line in follower.seen if "pre-restart" in line]) == 1  # nothing shown twice
        # h2's link goes down: its sshd no longer answers (as an instance that vanished).
        veth("h2", "down")
        try:
            lost = follower.wait_err("connection lost", timeout=40)
            assert LABEL["h2"] in lost and "other hosts keep streaming" in lost
            say("h1", "follow-mark after h1")
            say("h3", "follow-mark after h3", "worker")
            assert follower.wait_for("follow-mark after h1").startswith(LABEL["h1"])
            assert follower.wait_for("follow-mark after h3").startswith(f"{LABEL['h3']} worker")
            assert follower.proc.poll() is None  # still following
        finally:
            veth("h2", "up")
        assert follower.stop() == 0  # Ctrl-C ends a follow normally
    finally:
        if follower.proc.poll() is None:
            follower.proc.kill()
