"""`ghdeploy notify` -> `ghdeploy serve` -> the testbed fleet, with real processes.

Each receiver is a real `ghdeploy serve` (uvicorn) subprocess on 127.0.0.1; the callback goes to a
small HTTP listener in this process; the database is SQLite in the receiver's directory, or the
testbed's PostgreSQL (GHTB_PG_URL) for two receivers sharing one queue. Images are built and
pushed once for the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ghdeploy.server.auth import sign
from ghdeploy.server.payload import build
from tests.integration.conftest import REPO, busy, commit, containers, git, host_http, make_broken, schema_errors

SECRET = "integration-webhook-secret-0123456789"
TOKEN = "integration-api-token-0123456789"
H1, H2, H3 = "root@10.77.1.2", "root@10.77.2.2", "root@10.77.3.2"
FINAL = ("succeeded", "rolled back", "failed", "superseded", "interrupted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def env(testbed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("EC2_", "ECR_", "IMAGE_TAG", "GH_", "ASG_", "SSH_"))
    }
    env.update({k: v for k, v in testbed_env.items() if not k.startswith("GHTB_")})
    env.update(
        HOME=str(home),
        NO_COLOR="1",
        PYTHONPATH=str(REPO),
        AWS_EC2_METADATA_DISABLED="true",
        DEPLOY_WEBHOOK_SECRET=SECRET,
        DEPLOY_API_TOKEN=TOKEN,
        HEALTH_TIMEOUT="6",
    )
    env.pop("EC2_HOST", None)
    return env


@pytest.fixture(scope="module")
def app(testbed_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("serve-app") / "app"
    subprocess.run(["git", "clone", "-q", testbed_env["GHTB_SAMPLE_APP"], str(dest)], check=True)
    return dest


@pytest.fixture(scope="module")
def tags(app: Path, env: dict[str, str]) -> dict[str, str]:
    """Three good images and a broken one, pushed under fresh tags: name -> tag."""
    run_id = uuid.uuid4().hex[:6]
    made: dict[str, str] = {}
    for name in ("a", "b", "c", "broken"):
        if name == "broken":
            make_broken(app)
        else:
            commit(app, f"serve test {run_id} {name}")
        tag = f"srv-{run_id}-{name}"
        proc = subprocess.run(
            [sys.executable, "-m", "ghdeploy", "deploy", "--push-only", "--tag", tag],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        made[name] = tag
    git(app, "reset", "-q", "--hard", "HEAD~1")  # notify's commit is a good one
    return made


class Listener:
    """The CI side's callback endpoint: keeps every POST (headers, body)."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[tuple[dict[str, str], bytes]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/deploy-finished"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_deploy(self, deploy_id: int, tag: str, timeout: float = 60) -> tuple[dict[str, str], dict[str, Any]]:
        """The callback of deploy `deploy_id` of `tag` (each receiver has its own database, so its own ids)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, raw in self.received:
                data = json.loads(raw)
                if data.get("id") == deploy_id and data.get("image_tag") == tag:
                    assert headers["x-gh-webhook-signature"] == sign(SECRET, raw), "callback not signed with the secret"
                    return headers, data
            time.sleep(0.1)
        raise AssertionError(f"no callback for deploy #{deploy_id}: {self.received}")


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.server.shutdown()


class Receiver:
    def __init__(self, env: dict[str, str], cwd: Path, hosts: list[str], **extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env, EC2_HOST=",".join(hosts), **extra)
        self.cwd = cwd
        self.log = cwd / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Receiver:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ghdeploy", "serve", "--listen", f"127.0.0.1:{self.port}"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait(self, deploy_id: int, *statuses: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(f"/api/v1/deploys/{deploy_id}")
            if record["status"] in statuses:
                return record
            time.sleep(0.1)
        raise AssertionError(f"deploy #{deploy_id} never became {statuses}:\n{self.log.read_text()[-3000:]}")

    def post(self, raw: bytes, signature: str | None = None, **headers: str) -> httpx.Response:
        sent = {"Content-Type": "application/json", "X-GH-Webhook-Signature": signature or sign(SECRET, raw), **headers}
        return httpx.post(f"{self.url}/api/v1/webhooks/ghosthands/deploy", content=raw, headers=sent, timeout=30)


@pytest.fixture
def receivers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(hosts: list[str], cwd: Path | None = None, **extra: str) -> Receiver:
        receiver = Receiver(env, cwd or tmp_path, hosts, **extra)
        started.append(receiver)
        return receiver.start()

    yield make
    for receiver in started:
        receiver.stop()


def notify(app: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ghdeploy", "notify", *args],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def version(ns: str) -> dict[str, Any]:
    return dict(json.loads(host_http(ns, "/health/version")))


def history(ns: str) -> list[dict[str, Any]]:
    path = Path(f"/var/lib/ghtb/{ns}/opt/.ghdeploy/history.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def payload_for(tag: str, **changes: Any) -> bytes:
    data = json.loads(
        build(
            registry="10.88.0.1:5131",
            repository="ghosthands",
            tag=tag,
            commit_sha="f" * 40,
            commit_message="by hand",
            environment="production",
            run_url="https://ci.example/runs/9",
        )
    )
    data.update(changes)
    return json.dumps(data).encode()


# --- the tests -----------------------------------------------------------------------------------


def test_notify_deploys_the_fleet_records_and_calls_back(
    receivers: Callable[..., Receiver], app: Path, env: dict[str, str], tags: dict[str, str], listener: Listener
) -> None:
    receiver = receivers([H1, H2, H3], DEPLOY_CALLBACK_URL=listener.url)
    sha = git(app, "rev-parse", "HEAD")
    run_url = "https://ci.example/org/app/actions/runs/41"
    proc = notify(app, env, "--url", receiver.url, "--tag", tags["a"], "--run-url", run_url, "--wait")
    assert proc.returncode == 0, proc.stderr
    deploy_id = int(proc.stdout.strip())
    record = receiver.get(f"/api/v1/deploys/{deploy_id}")
    assert record["status"] == "succeeded" and record["commit_sha"] == sha and record["run_url"] == run_url
    assert [h["host"] for h in record["hosts"]] == [H1, H2, H3]
    assert all(h["result"] == "succeeded" and h["to"]["label"].endswith(tags["a"]) for h in record["hosts"])
    assert set(record["hosts"][0]) >= {"host", "action", "result", "succeeded", "from", "to", "phases", "error"}
    for ns in ("h1", "h2", "h3"):
        assert version(ns)["image_tag"] == tags["a"]
        last = history(ns)[-1]
        assert last["operator"] == f"webhook:{socket.gethostname()}" and run_url in last["message"]
    headers, callback = listener.for_deploy(deploy_id, tags["a"])
    assert headers["x-gh-event"] == "deploy_finished" and headers["content-type"] == "application/json"
    assert callback["event"] == "ghosthands.deploy_finished" and callback["status"] == "succeeded"
    assert callback["image_tag"] == tags["a"] and callback["commit_sha"] == sha and len(callback["hosts"]) == 3
    delivered = receiver.wait(deploy_id, "succeeded")
    assert delivered["callback"]["delivered"] is True
    assert not schema_errors(delivered, "server_deploy"), schema_errors(delivered, "server_deploy")

    # The same tag again: every host runs it already, so nothing is touched.
    before = {ns: containers(ns) for ns in ("h1", "h2", "h3")}
    again = notify(app, env, "--url", receiver.url, "--tag", tags["a"], "--wait")
    assert again.returncode == 0, again.stderr
    record = receiver.get(f"/api/v1/deploys/{int(again.stdout)}")
    assert record["status"] == "succeeded" and any("already runs" in n for n in record["notes"])
    assert {ns: containers(ns) for ns in ("h1", "h2", "h3")} == before

    # A delivery repeated byte for byte is the same deploy.
    raw = payload_for(tags["a"])
    first = receiver.post(raw)
    assert first.status_code == 202
    repeat = receiver.post(raw)
    assert repeat.status_code == 200 and repeat.json() == {"id": first.json()["id"], "status": "duplicate"}
    receiver.wait(first.json()["id"], *FINAL)


def test_broken_image_is_rolled_back_recorded_and_called_back(
    receivers: Callable[..., Receiver], app: Path, env: dict[str, str], tags: dict[str, str], listener: Listener
) -> None:
    receiver = receivers([H2, H3], DEPLOY_CALLBACK_URL=listener.url)
    setup = receiver.post(payload_for(tags["b"]))
    assert receiver.wait(setup.json()["id"], *FINAL)["status"] == "succeeded"
    h3_before = containers("h3")
    proc = notify(app, env, "--url", receiver.url, "--tag", tags["broken"], "--wait")
    assert proc.returncode == 1
    deploy_id = int(proc.stdout)
    record = receiver.get(f"/api/v1/deploys/{deploy_id}")
    assert record["status"] == "rolled back"
    assert [h["result"] for h in record["hosts"]] == ["rolled back", "untouched"]
    assert "rolled back" in proc.stderr
    assert version("h2")["image_tag"] == tags["b"] and containers("h3") == h3_before
    _, callback = listener.for_deploy(deploy_id, tags["broken"])
    assert callback["status"] == "rolled back" and callback["hosts"][0]["result"] == "rolled back"


def test_refusals_answer_their_status_and_deploy_nothing(
    receivers: Callable[..., Receiver], app: Path, env: dict[str, str], tags: dict[str, str]
) -> None:
    receiver = receivers([H3])
    before = containers("h3")
    good = payload_for(tags["c"])
    big = payload_for(tags["c"], commit_message="x" * 70000)

    assert receiver.post(big).status_code == 413
    wrong = notify(app, dict(env, DEPLOY_WEBHOOK_SECRET="not-the-receivers-secret-0000"), "--url", receiver.url)
    assert wrong.returncode == 1 and "401" in wrong.stderr and "X-GH-Webhook-Signature" in wrong.stderr
    assert receiver.post(good, signature="sha256=" + "0" * 64).status_code == 401
    unsigned = httpx.post(f"{receiver.url}/api/v1/webhooks/ghosthands/deploy", content=good, timeout=10)
    assert unsigned.status_code == 401
    assert receiver.post(b"{not json").status_code == 400
    assert receiver.post(json.dumps({"event": "ghosthands.deploy_ready"}).encode()).status_code == 400
    staging = notify(app, env, "--url", receiver.url, "--tag", tags["c"], "--environment", "staging")
    assert staging.returncode == 1 and "422" in staging.stderr and "GH_ENVIRONMENT" in staging.stderr
    cases = {
        "event": payload_for(tags["c"], event="ghosthands.build_done"),
        "image": payload_for(tags["c"], image=f"evil.example/ghosthands:{tags['c']}"),
        "tag": payload_for("-bad", image="10.88.0.1:5131/ghosthands:-bad"),
        "sent_at": payload_for(tags["c"], sent_at="2020-01-01T00:00:00Z"),
    }
    for name, raw in cases.items():
        answer = receiver.post(raw)
        assert answer.status_code == 422, (name, answer.text)
        assert answer.json()["error"], name
    bad_tag = notify(app, env, "--url", receiver.url, "--tag", "-bad")
    assert bad_tag.returncode == 2  # refused before anything is sent
    assert receiver.get("/api/v1/deploys")["deploys"] == []
    assert httpx.get(f"{receiver.url}/api/v1/deploys", timeout=10).status_code == 401
    assert containers("h3") == before


def test_three_quick_webhooks_first_runs_middle_superseded_last_runs(
    receivers: Callable[..., Receiver], tags: dict[str, str]
) -> None:
    receiver = receivers([H3])
    base = receiver.post(payload_for(tags["a"]))
    receiver.wait(base.json()["id"], *FINAL)
    busy("h3", 4)  # the worker has a job: the first deploy drains for a few seconds
    first = receiver.post(payload_for(tags["b"])).json()["id"]
    receiver.wait(first, "running")
    middle = receiver.post(payload_for(tags["c"])).json()["id"]
    last = receiver.post(payload_for(tags["a"], commit_message="last")).json()["id"]
    assert receiver.wait(first, *FINAL)["status"] == "succeeded"
    assert receiver.wait(middle, *FINAL)["status"] == "superseded"
    assert receiver.wait(last, *FINAL)["status"] == "succeeded"
    records = {r["id"]: r for r in receiver.get("/api/v1/deploys?limit=3")["deploys"]}
    assert list(records) == [last, middle, first]
    assert records[middle]["hosts"] == [] and records[middle]["started_at"] is None
    assert records[first]["finished_at"] <= records[last]["started_at"]
    assert version("h3")["image_tag"] == tags["a"]


def test_receiver_killed_mid_deploy_is_marked_interrupted_at_restart(
    receivers: Callable[..., Receiver], tags: dict[str, str], tmp_path: Path, clean_hosts: Callable[..., None]
) -> None:
    receiver = receivers([H2])  # SQLite, the default: ./ghdeploy-serve.db in the receiver's directory
    base = receiver.post(payload_for(tags["a"]))
    receiver.wait(base.json()["id"], *FINAL)
    busy("h2", 30)
    deploy_id = receiver.post(payload_for(tags["c"])).json()["id"]
    deadline = time.monotonic() + 120
    while "draining" not in json.dumps(receiver.get(f"/api/v1/deploys/{deploy_id}")["progress"]):
        assert time.monotonic() < deadline, "the deploy never reached the drain"
        time.sleep(0.1)
    receiver.kill9()
    assert (tmp_path / "ghdeploy-serve.db").exists()
    try:
        restarted = receivers([H2])
        record = restarted.get(f"/api/v1/deploys/{deploy_id}")
        assert record["status"] == "interrupted" and record["finished_at"] and "stopped" in record["error"]
        assert restarted.get(f"/api/v1/deploys/{base.json()['id']}")["status"] == "succeeded"
    finally:
        clean_hosts("h2")  # the killed deploy left h2 locked and its worker draining


def test_sigterm_lets_the_running_deploy_stop_at_a_safe_point(
    receivers: Callable[..., Receiver], tags: dict[str, str]
) -> None:
    receiver = receivers([H3])
    base = receiver.post(payload_for(tags["a"]))
    assert receiver.wait(base.json()["id"], *FINAL)["status"] == "succeeded"
    busy("h3", 6)
    deploy_id = receiver.post(payload_for(tags["b"])).json()["id"]
    deadline = time.monotonic() + 120
    while "draining" not in json.dumps(receiver.get(f"/api/v1/deploys/{deploy_id}")["progress"]):
        assert time.monotonic() < deadline, "the deploy never reached the drain"
        time.sleep(0.1)
    queued = receiver.post(payload_for(tags["c"])).json()["id"]  # waits behind the running one
    assert receiver.get(f"/api/v1/deploys/{queued}")["status"] == "queued"
    assert receiver.proc is not None
    receiver.proc.send_signal(signal.SIGTERM)
    # It waits for the deploy to reach a safe point, then exits 0: a clean stop, not a crash (143).
    assert receiver.proc.wait(300) == 0, receiver.log.read_text()
    log = receiver.log.read_text()
    assert "SIGTERM received: shutting down gracefully" in log
    assert "stops at its next safe point" in log
    assert "stopped on SIGTERM" in log and "the next `ghdeploy serve` on it runs the newest" in log
    assert version("h3")["image_tag"] == tags["a"]  # back on the image it ran, healthy
    assert not Path("/var/lib/ghtb/h3/opt/.ghdeploy/lock").exists()  # and the host's lock is free
    restarted = receivers([H3])
    record = restarted.get(f"/api/v1/deploys/{deploy_id}")
    assert record["status"] == "interrupted" and record["hosts"][0]["result"] == "rolled back", record
    # The queued deploy was not lost: the next receiver on the same database runs it.
    assert restarted.wait(queued, *FINAL)["status"] == "succeeded"
    assert version("h3")["image_tag"] == tags["c"]


def test_two_receivers_on_postgresql_never_run_two_deploys_at_once(
    receivers: Callable[..., Receiver], tags: dict[str, str], testbed_env: dict[str, str], tmp_path: Path
) -> None:
    import psycopg

    admin = testbed_env["GHTB_PG_URL"]
    database = f"ghdeploy_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = admin.rsplit("/", 1)[0] + f"/{database}"
    try:
        (tmp_path / "r1").mkdir()
        (tmp_path / "r2").mkdir()
        one = receivers([H3], cwd=tmp_path / "r1", DATABASE_URL=url)
        two = receivers([H3], cwd=tmp_path / "r2", DATABASE_URL=url)
        base = one.post(payload_for(tags["a"]))
        one.wait(base.json()["id"], *FINAL)
        busy("h3", 3)
        first = one.post(payload_for(tags["b"])).json()["id"]
        one.wait(first, "running")
        second = two.post(payload_for(tags["c"])).json()["id"]  # the other receiver, same queue
        assert two.get(f"/api/v1/deploys/{second}")["status"] == "queued"
        a = two.wait(first, *FINAL)
        b = one.wait(second, *FINAL)
        assert a["status"] == "succeeded" and b["status"] == "succeeded", (a, b)
        assert a["finished_at"] <= b["started_at"]
        assert version("h3")["image_tag"] == tags["c"]
        # neither receiver ever found a host locked by the other
        assert all(h["result"] == "succeeded" for h in a["hosts"] + b["hosts"])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
