"""The agent's own logic: local transport, token renewal, which digest to deploy or skip, the loop.

The engine (run_host) and docker are replaced by fakes here; the records, the lock and the
heartbeat file are real files written by the real commands through the local transport.
"""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import agent_status, hostops, locks
from ghdeploy import remote_commands as rc
from ghdeploy.commands import agent as agent_mod
from ghdeploy.commands.agent import Agent, TokenSource, broken_here
from ghdeploy.config import AGENT_KEYS, load_config
from ghdeploy.engine.host import HostResult, Operation, Target
from ghdeploy.errors import ConfigError, GhdeployError, RemoteCommandError
from ghdeploy.hostops import ImageRecord, ServiceState, Snapshot
from ghdeploy.progress import RecordingReporter
from ghdeploy.registry import RegistryAuth
from ghdeploy.results import Result
from ghdeploy.transports.local import LocalConnection

REGISTRY = "10.88.0.1:5131"
IMAGE = f"{REGISTRY}/ghosthands"
OLD = "sha256:" + "0" * 64
NEW = "sha256:" + "1" * 64
NEWER = "sha256:" + "2" * 64


# --- local transport ------------------------------------------------------------------------


def test_local_run_passes_argv_and_stdin_without_a_shell(tmp_path: Path) -> None:
    conn = LocalConnection()
    result = conn.run(["sh", "-c", 'cat; echo " $1"', "sh", "$(not expanded); rm -rf /"], stdin=b"secret")
    assert result.rc == 0
    assert result.stdout == "secret $(not expanded); rm -rf /\n"
    assert conn.run(["sh", "-c", "echo oops >&2; exit 4"]).rc == 4
    assert conn.run(["no-such-binary-ghdeploy"]).rc == 127
    with pytest.raises(RemoteCommandError) as err:
        conn.check(["sh", "-c", "echo bad >&2; exit 2"])
    assert err.value.rc == 2 and "bad" in str(err.value)


def test_local_run_timeout_stops_the_command() -> None:
    conn = LocalConnection()
    with pytest.raises(GhdeployError, match=r"did not finish within 0\.3 s"):
        conn.run(["sleep", "30"], timeout=0.3)


def test_local_run_without_stdin_gives_eof() -> None:
    # A command that reads stdin must not wait for us forever.
    assert LocalConnection().run(["cat"], timeout=5).stdout == ""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "host": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_local_http_client_reaches_loopback_only() -> None:
    from ghdeploy.transports.http11 import ConnectError

    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with LocalConnection().http_client(timeout=2) as client:
            response = client.get(f"http://localhost:{port}/health")
            assert response.status_code == 200 and response.json()["path"] == "/health"
            with pytest.raises(ConnectError, match="only reaches http://localhost"):
                client.get("http://10.77.1.2:3100/health")
    finally:
        server.shutdown()
        server.server_close()


# --- tokens ---------------------------------------------------------------------------------


def test_token_is_renewed_an_hour_before_it_expires() -> None:
    clock = [1000.0]
    logins: list[float] = []

    def login(region: str, registry: str) -> RegistryAuth:
        logins.append(clock[0])
        return RegistryAuth(registry, "AWS", f"token-{len(logins)}", expires_at=clock[0] + 12 * 3600)

    tokens = TokenSource("us-east-1", REGISTRY, login=login, now=lambda: clock[0])
    assert tokens.get().password == "token-1"
    clock[0] += 10 * 3600  # 2 h left: still good
    assert tokens.get().password == "token-1"
    clock[0] += 1.5 * 3600  # 30 min left: renewed
    assert tokens.get().password == "token-2"
    tokens.invalidate()
    assert tokens.get().password == "token-3"


# --- which digest to skip -------------------------------------------------------------------


def record(action: str, result: str, to: str | None = None, frm: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "time": "2026-01-01T00:00:00Z",
        "action": action,
        "result": result,
        "to": {"digest": to} if to else None,
        "from": {"digest": frm} if frm else None,
        **extra,
    }


def test_broken_here_remembers_rolled_back_digests_until_one_succeeds() -> None:
    assert broken_here([], NEW) is None
    failed = record("deploy", "rolled back", to=NEW, error="/health did not answer")
    assert broken_here([failed], NEW) is failed
    assert broken_here([failed], NEWER) is None
    # An interrupted deploy says nothing about the image.
    assert broken_here([record("deploy", "rolled back", to=NEW, error="interrupted")], NEW) is None
    # A pull that failed changed nothing: tried again next poll.
    assert broken_here([record("deploy", "failed", to=NEW)], NEW) is None
    # Deployed fine later (someone fixed the cause): not broken any more.
    assert broken_here([failed, record("deploy", "succeeded", to=NEW)], NEW) is None
    # An operator rolled it back: the agent must not put it straight back.
    by_hand = record("rollback", "succeeded", frm=NEW)
    assert broken_here([record("deploy", "succeeded", to=NEW), by_hand], NEW) is by_hand


# --- the agent, on a host made of temp dirs -------------------------------------------------


def snapshot_running(digest: str | None) -> Snapshot:
    image = ImageRecord(
        image_id="sha256:" + (digest or "f" * 71)[-64:], ref=f"{IMAGE}@{digest}", repo_digest=f"{IMAGE}@{digest}"
    )
    return Snapshot(
        services={
            "api": ServiceState("api", "c1", "running", "", image),
            "worker": ServiceState("worker", "c2", "running", "", image),
        }
    )


class FakeHost:
    """What runs on the host, the registry's answer, and the engine's behaviour, for one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.running: str | None = OLD
        self.tag_digest: str | None = NEW
        self.healthy = True
        self.deploys: list[tuple[Operation, Target]] = []
        monkeypatch.setattr(hostops, "read_snapshot", lambda conn, layout: snapshot_running(self.running))
        monkeypatch.setattr(agent_mod.registry, "resolve_digest", lambda auth, repo, tag: self.tag_digest)
        monkeypatch.setattr(agent_mod, "run_host", self.run_host)
        self.pulls: list[str] = []
        monkeypatch.setattr(agent_mod, "ensure_image", lambda op, conn, target: self.pulls.append(target.ref))

    def run_host(self, op: Operation, conn: Any, target: Target, action: str = "deploy") -> HostResult:
        self.deploys.append((op, target))
        result = HostResult(host=conn.host.label, target=target, from_image=snapshot_running(self.running).app_image)
        if self.healthy:
            self.running = target.digest
            result.result = Result.SUCCEEDED
        else:
            result.result, result.error = Result.ROLLED_BACK, "/health did not answer 200 within 6s"
        hostops.append_record(
            conn,
            op.layout,
            {
                "time": "2026-01-01T00:00:00Z",
                "action": action,
                "operator": op.operator,
                "to": target.to_dict(),
                "from": result.from_image.to_dict() if result.from_image else None,
                "result": result.result,
                "error": result.error,
            },
        )
        return result


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    return FakeHost(monkeypatch)


def make_agent(tmp_path: Path, **env: str) -> Agent:
    environ = {
        "ECR_REGISTRY": REGISTRY,
        "AWS_REGION": "us-east-1",
        "GHOSTHANDS_DIR": str(tmp_path / "opt"),
        **env,
    }
    config = load_config(needs=AGENT_KEYS, environ=environ, cwd=tmp_path)
    tokens = TokenSource("us-east-1", REGISTRY, login=lambda r, g: RegistryAuth(g, "AWS", "t", expires_at=None))
    return Agent(config, LocalConnection(), RecordingReporter(), threading.Event(), tokens=tokens)


def test_agent_deploys_a_new_digest_by_digest_under_the_lock(tmp_path: Path, host: FakeHost) -> None:
    agent = make_agent(tmp_path)
    outcome = agent.poll()
    assert (outcome.action, outcome.digest, outcome.running, outcome.exit_code) == ("deployed", NEW, NEW, 0)
    op, target = host.deploys[0]
    assert target.ref == f"{IMAGE}@{NEW}" and target.digest == NEW
    assert op.operator == agent.operator and agent.operator.startswith("ghdeploy-agent@")
    assert locks.read(agent.conn, agent.layout) is None  # released
    # Second poll: nothing to do.
    again = agent.poll()
    assert (again.action, again.reason, again.exit_code) == ("none", "already running", 0)
    assert len(host.deploys) == 1


def test_agent_skips_a_rolled_back_digest_until_the_tag_moves(tmp_path: Path, host: FakeHost) -> None:
    agent = make_agent(tmp_path)
    host.healthy = False
    first = agent.poll()
    assert (first.action, first.exit_code, first.running) == ("rolled back", 1, OLD)
    second = agent.poll()
    assert (second.action, second.exit_code) == ("skipped", 0)
    assert "waiting for latest to point at a new image" in second.reason
    assert len(host.deploys) == 1
    host.healthy, host.tag_digest = True, NEWER
    third = agent.poll()
    assert (third.action, third.running) == ("deployed", NEWER)


def test_agent_leaves_a_locked_host_alone_with_exit_3(tmp_path: Path, host: FakeHost) -> None:
    agent = make_agent(tmp_path)
    holder = locks.lock_info("alice@laptop", "deploy", "v9", "hotfix")
    assert locks.acquire(agent.conn, agent.layout, holder) is None
    outcome = agent.poll()
    assert (outcome.action, outcome.exit_code) == ("skipped", 3)
    assert "alice@laptop" in outcome.reason
    assert host.deploys == []
    held = locks.read(agent.conn, agent.layout)
    assert held is not None and held.operator == "alice@laptop"  # still theirs


def test_agent_reports_a_registry_failure_and_logs_in_again(
    tmp_path: Path, host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_agent(tmp_path)

    def refuse(auth: RegistryAuth, repo: str, tag: str) -> str:
        raise agent_mod.registry.RegistryError("registry refused the ECR token (HTTP 401)", "check ECR_REGISTRY")

    monkeypatch.setattr(agent_mod.registry, "resolve_digest", refuse)
    outcome = agent.poll()
    assert (outcome.action, outcome.exit_code) == ("failed", 1)
    assert "HTTP 401" in outcome.reason and agent.tokens._auth is None


def test_once_writes_a_heartbeat_that_status_reads(tmp_path: Path, host: FakeHost) -> None:
    agent = make_agent(tmp_path, AGENT_TAG="stable")
    host.running = NEW
    events: list[tuple[str, dict[str, Any]]] = []
    assert agent.run(lambda kind, data: events.append((kind, data)), once=True) == 0
    assert [kind for kind, _ in events] == ["poll"]
    text = (tmp_path / "opt" / rc.STATE_DIRNAME / agent_status.FILENAME).read_text()
    summary = agent_status.summary(json.loads(text))
    assert summary is not None
    assert summary["running"] is False and summary["state"] == "stopped"
    assert summary["tag"] == "stable" and summary["last_result"]["action"] == "none"


def test_long_running_loop_stops_on_cancel_and_logs_changes_only(tmp_path: Path, host: FakeHost) -> None:
    agent = make_agent(tmp_path, AGENT_INTERVAL="5")
    host.running = NEW
    events: list[str] = []
    polls = [0]
    real_poll = agent.poll

    def poll() -> agent_mod.PollOutcome:
        polls[0] += 1
        if polls[0] == 3:
            agent.cancel.set()
        return real_poll()

    agent.poll = poll  # type: ignore[method-assign]
    agent.cancel.wait = lambda timeout=None: agent.cancel.is_set()  # type: ignore[method-assign]
    assert agent.run(lambda kind, data: events.append(kind), once=False) == 0
    # Three polls with the same "already running" answer: one log line for them.
    assert events == ["started", "poll", "stopped"] and polls[0] == 3


def test_status_summary_tells_running_from_dead() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    base = {"state": "idle", "tag": "latest", "last_poll": "2026-01-01T11:59:30Z"}
    alive = agent_status.summary({**base, "expect_by": agent_status.iso(now + timedelta(seconds=60))}, now)
    assert alive is not None and alive["running"] and alive["state"] == "idle"
    dead = agent_status.summary({**base, "expect_by": agent_status.iso(now - timedelta(seconds=1))}, now)
    assert dead is not None and not dead["running"] and dead["state"] == "not responding"
    assert agent_status.summary(None) is None


def test_agent_config_keys_are_validated(tmp_path: Path) -> None:
    base = {"ECR_REGISTRY": REGISTRY, "AWS_REGION": "us-east-1"}
    config = load_config(needs=AGENT_KEYS, environ=base, cwd=tmp_path)
    assert (config.text("AGENT_TAG"), config.number("AGENT_INTERVAL"), config.number("AGENT_FLEET_BATCH")) == (
        "latest",
        60,
        1,
    )
    assert config.get("AGENT_FLEET_TABLE") is None and config.get("EC2_HOST") is None
    bad = {**base, "AGENT_INTERVAL": "2", "AGENT_TAG": "no good", "AGENT_FLEET_BATCH": "0", "AGENT_FLEET_TABLE": "x"}
    with pytest.raises(ConfigError) as err:
        load_config(needs=AGENT_KEYS, environ=bad, cwd=tmp_path)
    text = str(err.value)
    for key in ("AGENT_INTERVAL", "AGENT_TAG", "AGENT_FLEET_BATCH", "AGENT_FLEET_TABLE"):
        assert key in text


# --- with a fleet table (moto's in-process DynamoDB) ----------------------------------------


@pytest.fixture
def fleet_table(monkeypatch: pytest.MonkeyPatch) -> Any:
    moto = pytest.importorskip("moto")
    from ghdeploy.aws.fleet_table import FleetTable

    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        table = FleetTable("fleet", "us-east-1")
        table.create_or_exists()
        yield table


def test_a_digest_failed_on_another_host_is_skipped_untried(tmp_path: Path, host: FakeHost, fleet_table: Any) -> None:
    fleet_table.mark_failed(NEW, "ip-10-0-1-5", "/health did not answer 200", "2026-01-01T00:00:00Z")
    agent = make_agent(tmp_path)
    agent.table = fleet_table
    outcome = agent.poll()
    assert (outcome.action, outcome.exit_code) == ("skipped", 0)
    assert "failed on ip-10-0-1-5" in outcome.reason and "fleet table fleet" in outcome.reason
    assert host.deploys == []


def test_a_rollback_marks_the_digest_failed_for_the_fleet_and_frees_the_slot(
    tmp_path: Path, host: FakeHost, fleet_table: Any
) -> None:
    agent = make_agent(tmp_path)
    agent.table = fleet_table
    host.healthy = False
    assert agent.poll().action == "rolled back"
    assert fleet_table.failed(NEW)["host"] == agent.conn.host.label
    assert fleet_table.holders(1) == []


def test_waiting_for_a_busy_slot_can_be_interrupted(tmp_path: Path, host: FakeHost, fleet_table: Any) -> None:
    assert fleet_table.acquire("other-host", "t", NEW, batch=1, ttl=600) is not None
    agent = make_agent(tmp_path)
    agent.table = fleet_table
    waits: list[float] = []

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0)
        agent.cancel.set()
        return True

    agent.cancel.wait = wait  # type: ignore[method-assign]
    outcome = agent.poll()
    assert (outcome.action, outcome.exit_code) == ("none", 130)
    assert waits and host.deploys == []
    assert host.pulls == [f"{IMAGE}@{NEW}"]  # pulled while waiting its turn
    assert any("other-host is switching" in m for m in agent.reporter.messages("info"))  # type: ignore[attr-defined]
