"""The JSON of `agent`, `notify`, `serve`'s HTTP answers and `logs` matches the schema in docs/json-schema/.

Each document comes from the real code: the agent polls through its real loop (the host's engine
faked as in test_agent), notify talks to the real receiver app (Starlette over SQLite, the fleet
deploy replaced by a real per-host run against a fake Docker host), logs prints real parsed lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from ghdeploy import render
from ghdeploy.config import load_config
from ghdeploy.environment import Environment
from ghdeploy.logmerge import LogSource, parse_lines
from ghdeploy.progress import RecordingReporter
from ghdeploy.render_logs import LogPrinter
from tests.unit.test_agent import NEWER, FakeHost, make_agent
from tests.unit.test_json_schema import SCHEMA_FILE, deployed_fleet

SECRET = "s3cret-for-schema-tests-0123"
TOKEN = "token-for-schema-tests-0123"


def schema() -> dict[str, Any]:
    loaded = json.loads(SCHEMA_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def validator(definition: str | None = None) -> jsonschema.Draft202012Validator:
    """The whole schema (a --json document) or one of its $defs (a JSON line, an HTTP answer)."""
    full = schema()
    target = full if definition is None else {"$ref": f"#/$defs/{definition}", "$defs": full["$defs"]}
    return jsonschema.Draft202012Validator(target)


def check(doc: Any, definition: str | None = None) -> None:
    errors = sorted(validator(definition).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{definition or doc.get('command')}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )


def one_document(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


# --- agent ----------------------------------------------------------------------------------


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    return FakeHost(monkeypatch)


def test_agent_once_and_the_agents_json_lines_match_the_schema(
    tmp_path: Path, host: FakeHost, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = make_agent(tmp_path)
    env = Environment(json=True)

    # `agent --once --json`, collected as the CLI collects it (cli/cmd_agent.py)
    outcome: dict[str, Any] = {}
    agent.run(lambda kind, data: outcome.update(data) if kind == "poll" else None, once=True)
    assert render.agent_once(outcome, env) == 0
    doc = one_document(capsys)
    assert doc["command"] == "agent" and doc["action"] == "deployed" and doc["deploy"] is not None
    check(doc)
    assert not validator().is_valid({**doc, "running": 5})  # a type changed

    # the long-running agent: started, a poll that deploys, stopped (cancelled after the poll)
    host.tag_digest = NEWER

    def emit(kind: str, data: dict[str, Any]) -> None:
        render.agent_event(kind, data, env)
        if kind == "poll":
            agent.cancel.set()

    assert agent.run(emit, once=False) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["started", "poll", "stopped"]
    assert lines[1]["deploy"]["to"]["digest"] == NEWER
    for line in lines:
        check(line, "agent_event")
    events = validator("agent_event")
    assert not events.is_valid({**lines[1], "action": "exploded"})  # an action nobody documented
    assert not events.is_valid({**lines[2], "pid": 1})  # a key a stopped event does not have


def test_agent_init_table_matches_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghdeploy.aws.fleet_table import FleetTable
    from ghdeploy.commands import agent as agent_cmd

    monkeypatch.setattr(FleetTable, "create_or_exists", lambda self: True)  # no DynamoDB here
    config = load_config(
        needs=("AWS_REGION", "AGENT_FLEET_TABLE"),
        environ={"AWS_REGION": "us-east-1", "AGENT_FLEET_TABLE": "ghosthands-fleet"},
        cwd=tmp_path,
    )
    assert render.agent_table_result(agent_cmd.init_table(config), Environment(json=True)) == 0
    doc = one_document(capsys)
    assert doc["command"] == "agent init-table" and doc["created"] is True
    check(doc)


# --- notify and the receiver ----------------------------------------------------------------


def real_fleet_deploy(record: dict[str, Any], reporter: Any, cancel: threading.Event) -> Any:
    """The queue's deployer: a real per-host run (fake Docker host), turned into the record as serve does."""
    from ghdeploy.server.deployer import status_of
    from ghdeploy.server.queue import Outcome

    reporter.step("ec2-user@10.0.0.1", "pulling")
    fleet = deployed_fleet()
    return Outcome(status=status_of(fleet), hosts=fleet.to_dict()["hosts"], notes=["a note"])


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[httpx.Client]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its test client; httpx is what we ship
        from starlette.testclient import TestClient

    from ghdeploy.server import payload
    from ghdeploy.server.app import Receiver, create_app
    from ghdeploy.server.queue import DeployQueue
    from ghdeploy.server.store import Store

    store = Store(f"sqlite:///{tmp_path / 'r.db'}", "production", "test:1")
    store.create()
    queue = DeployQueue(store, real_fleet_deploy, poll=0.05)
    expect = payload.Expectations(
        registry="10.88.0.1:5131", repository="ghosthands", environment="production", max_age=300
    )
    app = create_app(Receiver(store=store, queue=queue, secret=SECRET, token=TOKEN, expect=expect))
    with TestClient(app) as client:
        yield client
    store.close()


def notify_config(tmp_path: Path) -> Any:
    return load_config(
        needs=("ECR_REGISTRY", "ECR_REPOSITORY", "GH_ENVIRONMENT"),
        environ={"ECR_REGISTRY": "10.88.0.1:5131", "ECR_REPOSITORY": "ghosthands", "GH_ENVIRONMENT": "production"},
        cwd=tmp_path,
    )


def test_notify_and_the_receivers_answers_match_the_schema(
    receiver: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghdeploy.commands import notify as notify_cmd

    @contextlib.contextmanager
    def through_the_app(timeout: float) -> Iterator[httpx.Client]:
        yield receiver  # the app's own test client: requests go to the real receiver in-process

    monkeypatch.setattr(notify_cmd, "_client", through_the_app)
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)  # tmp_path is not a checkout

    def send(secret: str, wait: bool) -> dict[str, Any]:
        outcome = notify_cmd.notify(
            notify_config(tmp_path),
            tmp_path,
            RecordingReporter(),
            url="http://testserver",
            secret=secret,
            token=TOKEN,
            tag="abc1234",
            environment=None,
            message="fix login",
            run_url="https://ci.example/run/1",
            wait=wait,
            sleep=lambda seconds: time.sleep(0.02),
        )
        render.notify_result(outcome, Environment(json=True))
        return one_document(capsys)

    waited = send(SECRET, wait=True)
    assert waited["ok"] is True and waited["status"] == "queued" and waited["deploy"]["status"] == "succeeded"
    assert waited["deploy"]["hosts"][0]["result"] == "succeeded"
    check(waited)
    assert not validator().is_valid({k: v for k, v in waited.items() if k != "tag"})  # a key gone
    assert not validator().is_valid({**waited, "deploy": {**waited["deploy"], "status": "done"}})  # not a status
    refused = send("not-the-secret-0123456789", wait=False)
    assert refused["ok"] is False and refused["status_code"] == 401 and refused["reason"]
    check(refused)

    # what `serve` answers over HTTP, the record notify --wait printed included
    auth = {"Authorization": f"Bearer {TOKEN}"}
    one = receiver.get(f"/api/v1/deploys/{waited['id']}", headers=auth)
    assert one.status_code == 200 and one.json()["callback"] is None
    check(one.json(), "server_deploy")
    many = receiver.get("/api/v1/deploys", headers=auth)
    assert many.status_code == 200 and len(many.json()["deploys"]) == 1
    check(many.json(), "server_deploys")
    health = receiver.get("/healthz")
    assert health.status_code == 200
    check(health.json(), "server_health")
    missing = receiver.get("/api/v1/deploys/999", headers=auth)
    assert missing.status_code == 404
    check(missing.json(), "server_error")
    from ghdeploy.server.auth import SIGNATURE_HEADER, sign
    from ghdeploy.server.payload import build

    body = build(
        registry="10.88.0.1:5131",
        repository="ghosthands",
        tag="def5678",
        commit_sha="b" * 40,
        commit_message="x",
        environment="production",
        run_url="",
    )
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(SECRET, body)}
    first = receiver.post("/api/v1/webhooks/ghosthands/deploy", content=body, headers=headers)
    again = receiver.post("/api/v1/webhooks/ghosthands/deploy", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    check(first.json(), "server_webhook_answer")
    check(again.json(), "server_webhook_answer")


# --- logs -----------------------------------------------------------------------------------


def test_logs_json_lines_match_the_schema() -> None:
    source = LogSource(host="ec2-user@10.0.0.1", service="api", container_id="c1", running=True)
    raw = [b"2026-11-27T03:00:00.123456789Z server listening on :3100", b"a line without a time"]  # split by the reader
    out = io.StringIO()
    printer = LogPrinter([source.host], as_json=True, out=out, err=io.StringIO())
    for line in parse_lines(source, raw):
        printer.line(line)
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    assert len(lines) == 2 and lines[0]["time"] and lines[0]["line"] == "server listening on :3100"
    for line in lines:
        check(line, "log_line")
