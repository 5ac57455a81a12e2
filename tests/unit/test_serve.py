"""The webhook receiver's own logic: signatures, the order of checks, the queue, callbacks, settings.

The HTTP tests drive the real Starlette app (TestClient) over a real SQLite file; only the fleet
deploy is replaced by a function of the test's (the integration tests run the real one).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ghdeploy.config import Config
from ghdeploy.errors import ConfigError
from ghdeploy.server import callback, payload
from ghdeploy.server.auth import bearer_ok, sign, signature_ok
from ghdeploy.server.queue import DeployQueue, Outcome
from ghdeploy.server.settings import resolve, server_settings
from ghdeploy.server.store import Store, engine_url, safe_url

SECRET = "s3cret-for-unit-tests-0123"
TOKEN = "token-for-unit-tests-0123"
EXPECT = payload.Expectations(registry="10.88.0.1:5131", repository="ghosthands", environment="production", max_age=300)
REPO = Path(__file__).resolve().parents[2]


def body(**changes: Any) -> bytes:
    data = json.loads(
        payload.build(
            registry="10.88.0.1:5131",
            repository="ghosthands",
            tag="abc1234",
            commit_sha="a" * 40,
            commit_message="fix login\n\nlonger text",
            environment="production",
            run_url="https://ci.example/run/1",
        )
    )
    data.update(changes)
    for key in [k for k, v in changes.items() if v is ...]:
        del data[key]
    return json.dumps(data).encode()


# --- signatures ------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    raw = b'{"a": 1}'
    header = sign(SECRET, raw)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_ok(SECRET, raw, header)
    assert signature_ok(SECRET, raw, "SHA256=" + header[7:].upper())  # hex case does not matter
    assert not signature_ok(SECRET, raw + b" ", header)  # the exact bytes, not the parsed JSON
    assert not signature_ok("other-secret-0123456789", raw, header)
    assert not signature_ok(SECRET, raw, header[7:])  # prefix required
    assert not signature_ok(SECRET, raw, None)
    assert not signature_ok(SECRET, raw, "")
    assert not signature_ok(SECRET, raw, "sha256=ü")


def test_bearer_token() -> None:
    assert bearer_ok(TOKEN, f"Bearer {TOKEN}")
    assert bearer_ok(TOKEN, f"bearer  {TOKEN} ")
    assert not bearer_ok(TOKEN, f"Basic {TOKEN}")
    assert not bearer_ok(TOKEN, f"Bearer {TOKEN}x")
    assert not bearer_ok(TOKEN, None)
    assert not bearer_ok("", "Bearer ")


# --- payload ---------------------------------------------------------------------------------


def test_notify_builds_ci_payload_plus_sent_at() -> None:
    data = json.loads(body())
    assert data["event"] == "ghosthands.deploy_ready"
    assert data["image"] == "10.88.0.1:5131/ghosthands:abc1234"
    assert set(data) == {*payload.FIELDS, "sent_at"}
    assert payload.parse_time(data["sent_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (body(run_url=...), "missing field(s): run_url"),
        (body(image_tag=5), "not a string: image_tag"),
        (body(sent_at=12), "sent_at is not a string"),
        (body(sent_at="yesterday"), "not an ISO 8601 time"),
    ],
)
def test_unreadable_bodies_are_400(raw: bytes, reason: str) -> None:
    with pytest.raises(payload.Refusal) as caught:
        payload.parse(raw)
    assert caught.value.status == 400 and reason in caught.value.reason


NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "headers", "reason"),
    [
        ({"event": "ghosthands.other"}, {}, "event 'ghosthands.other'"),
        ({}, {"event": "push"}, "X-GH-Event 'push'"),
        ({"environment": "staging"}, {}, "not this receiver's GH_ENVIRONMENT 'production'"),
        ({}, {"environment": "staging"}, "X-GH-Environment 'staging' differs"),
        ({"image_tag": "-bad", "image": "10.88.0.1:5131/ghosthands:-bad"}, {}, "not a valid docker tag"),
        ({"image": "evil.example/ghosthands:abc1234"}, {}, "is not '10.88.0.1:5131/ghosthands:abc1234'"),
        ({"image": "10.88.0.1:5131/ghosthands:other"}, {}, "is not '10.88.0.1:5131/ghosthands:abc1234'"),
        ({"sent_at": "2026-11-27T03:54:00Z"}, {}, "360s old, more than WEBHOOK_MAX_AGE 300s"),
        ({"sent_at": "2026-11-27T04:06:00Z"}, {}, "in the future"),
    ],
)
def test_requests_not_for_this_receiver_are_422(changes: dict, headers: dict, reason: str) -> None:
    request = payload.parse(body(**changes))
    with pytest.raises(payload.Refusal) as caught:
        payload.check(request, EXPECT, NOW, headers.get("event"), headers.get("environment"))
    assert caught.value.status == 422 and reason in caught.value.reason


def test_fresh_or_absent_sent_at_passes() -> None:
    payload.check(payload.parse(body(sent_at="2026-11-27T03:56:00Z")), EXPECT, NOW, "deploy_ready", "production")
    payload.check(payload.parse(body(sent_at=...)), EXPECT, NOW)  # CI's curl payload has no sent_at


# --- the app: order of checks, answers, records ------------------------------------------------


class FakeDeploys:
    """Stands in for the fleet deploy: records calls, can be held open, returns a set status."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.status = "succeeded"
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, record: dict, reporter: Any, cancel: threading.Event) -> Outcome:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.calls.append(record["image_tag"])
        reporter.step("h1", "pulling")
        self.started.set()
        while not self.release.wait(0.02):
            if cancel.is_set():
                break
        with self._lock:
            self.active -= 1
        if cancel.is_set():
            return Outcome(status="interrupted", hosts=[{"host": "h1", "result": "untouched"}])
        return Outcome(status=self.status, hosts=[{"host": "h1", "result": self.status}])


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Any, FakeDeploys, Store]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette 1.x prefers httpx2 for its test client; httpx is what we ship
        from starlette.testclient import TestClient

    from ghdeploy.server.app import Receiver, create_app

    store = Store(f"sqlite:///{tmp_path / 'r.db'}", "production", "test:1")
    store.create()
    fake = FakeDeploys()
    queue = DeployQueue(store, fake, poll=0.05)
    app = create_app(Receiver(store=store, queue=queue, secret=SECRET, token=TOKEN, expect=EXPECT))
    with TestClient(app) as client:
        yield client, fake, store
    store.close()


def post(client: Any, raw: bytes, signature: str | None = "good", **headers: str) -> Any:
    sent = {"Content-Type": "application/json", **headers}
    if signature == "good":
        sent["X-GH-Webhook-Signature"] = sign(SECRET, raw)
    elif signature is not None:
        sent["X-GH-Webhook-Signature"] = signature
    return client.post("/api/v1/webhooks/ghosthands/deploy", content=raw, headers=sent)


def wait_status(store: Store, deploy_id: int, *statuses: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = store.get(deploy_id)
        if record and record["status"] in statuses:
            return record
        time.sleep(0.02)
    raise AssertionError(f"deploy #{deploy_id} never became {statuses}: {store.get(deploy_id)}")


def test_order_of_checks(receiver: Any) -> None:
    client, fake, store = receiver
    big = b"{" + b" " * payload.MAX_BODY + b"}"
    assert post(client, big, signature=None).status_code == 413  # size first, even unsigned
    # chunked, no Content-Length: the streaming read stops at the cap
    chunks = iter([b" " * 40000, b" " * 40000])
    answer = client.post(
        "/api/v1/webhooks/ghosthands/deploy", content=chunks, headers={"X-GH-Webhook-Signature": sign(SECRET, big)}
    )
    assert answer.status_code == 413
    assert post(client, b"not json", signature=None).status_code == 401  # signature before parsing
    assert post(client, b"not json", signature="sha256=" + "0" * 64).status_code == 401
    assert post(client, body(), signature=sign("another-secret-12345678", body())).status_code == 401
    assert post(client, b"not json").status_code == 400
    refused = post(client, body(environment="staging"))
    assert refused.status_code == 422 and "GH_ENVIRONMENT" in refused.json()["error"]
    stale = post(client, body(sent_at="2020-01-01T00:00:00Z"))
    assert stale.status_code == 422 and "WEBHOOK_MAX_AGE" in stale.json()["error"]
    assert store.recent(10) == [] and fake.calls == []  # refusals store nothing, deploy nothing


def test_accepted_then_duplicate(receiver: Any) -> None:
    client, fake, store = receiver
    raw = body()
    first = post(client, raw, **{"X-GH-Event": "deploy_ready", "X-GH-Environment": "production"})
    assert first.status_code == 202 and first.json()["status"] == "queued"
    deploy_id = first.json()["id"]
    again = post(client, raw)
    assert again.status_code == 200 and again.json() == {"id": deploy_id, "status": "duplicate"}
    record = wait_status(store, deploy_id, "succeeded")
    assert fake.calls == ["abc1234"]
    assert record["hosts"] == [{"host": "h1", "result": "succeeded"}]
    assert record["commit_message"].startswith("fix login") and record["started_at"] and record["finished_at"]


def test_read_endpoints_need_the_token(receiver: Any) -> None:
    client, _, store = receiver
    deploy_id = post(client, body()).json()["id"]
    wait_status(store, deploy_id, "succeeded")
    assert client.get(f"/api/v1/deploys/{deploy_id}").status_code == 401
    assert client.get("/api/v1/deploys", headers={"Authorization": "Bearer nope"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    one = client.get(f"/api/v1/deploys/{deploy_id}", headers=auth)
    assert one.status_code == 200 and one.json()["status"] == "succeeded"
    assert client.get("/api/v1/deploys/999", headers=auth).status_code == 404
    listed = client.get("/api/v1/deploys?limit=1", headers=auth)
    assert [d["id"] for d in listed.json()["deploys"]] == [deploy_id]
    assert client.get("/api/v1/deploys?limit=0", headers=auth).status_code == 400
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True


def test_newest_queued_wins_older_are_superseded(receiver: Any) -> None:
    client, fake, store = receiver
    fake.release.clear()
    first = post(client, body(image_tag="t1", image="10.88.0.1:5131/ghosthands:t1")).json()["id"]
    assert fake.started.wait(5)
    middle = post(client, body(image_tag="t2", image="10.88.0.1:5131/ghosthands:t2")).json()["id"]
    last = post(client, body(image_tag="t3", image="10.88.0.1:5131/ghosthands:t3")).json()["id"]
    assert store.get(middle)["status"] == "queued"
    fake.release.set()
    wait_status(store, last, "succeeded")
    assert store.get(first)["status"] == "succeeded"
    superseded = store.get(middle)
    assert superseded["status"] == "superseded" and f"#{last}" in superseded["error"]
    assert fake.calls == ["t1", "t3"] and fake.max_active == 1


def test_rolled_back_status_is_recorded(receiver: Any) -> None:
    client, fake, store = receiver
    fake.status = "rolled back"
    deploy_id = post(client, body()).json()["id"]
    assert wait_status(store, deploy_id, "rolled back")["hosts"][0]["result"] == "rolled back"


# --- queue and store without HTTP ----------------------------------------------------------------


def request(tag: str) -> payload.DeployRequest:
    return payload.parse(body(image_tag=tag, image=f"10.88.0.1:5131/ghosthands:{tag}"))


def test_running_deploy_of_a_dead_receiver_becomes_interrupted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    dead = Store(url, "production", "dead:1")
    dead.create()
    deploy_id, _ = dead.add(request("t1"), "x1")
    with dead.run_lock() as ours:
        assert ours
        claim = dead.claim()
        assert claim is not None and claim.record["status"] == "running"
    finished: list[dict] = []
    fresh = Store(url, "production", "fresh:2")
    queue = DeployQueue(fresh, FakeDeploys(), finished.append)
    assert queue.recover() == [deploy_id]
    record = fresh.get(deploy_id)
    assert record is not None and record["status"] == "interrupted" and record["finished_at"]
    assert [r["status"] for r in finished] == ["interrupted"]


def test_only_the_run_lock_holder_claims(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    one, two = Store(url, "production", "a:1"), Store(url, "production", "b:2")
    one.create()
    one.add(request("t1"), "x1")
    with one.run_lock() as first:
        assert first
        with two.run_lock() as second:
            assert not second  # another receiver holds it: this one does not claim
        running = DeployQueue(two, FakeDeploys()).recover()
        assert running == []  # nor does it mark anything interrupted while someone runs
    with two.run_lock() as later:
        assert later


def test_queues_of_other_environments_are_not_ours(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    prod, staging = Store(url, "production", "a:1"), Store(url, "staging", "b:2")
    prod.create()
    prod.add(request("t1"), "x1")
    assert prod.has_queued() and not staging.has_queued()
    with staging.run_lock() as ours:
        assert ours and staging.claim() is None


def test_urls() -> None:
    assert engine_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert engine_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "hunter2" not in safe_url("postgresql://u:hunter2@h/db")


# --- callbacks ---------------------------------------------------------------------------------


def test_callback_retries_with_backoff_then_records_failure() -> None:
    sent: list[tuple[str, bytes, dict]] = []
    sleeps: list[float] = []

    def post(url: str, raw: bytes, headers: dict, timeout: float) -> int:
        sent.append((url, raw, headers))
        raise OSError("connection refused")

    outcome = callback.send("http://cb", SECRET, b"{}", post=post, sleep=sleeps.append)
    assert outcome["delivered"] is False and outcome["attempts"] == callback.ATTEMPTS
    assert sleeps == [1.0, 2.0, 4.0]
    assert "connection refused" in outcome["error"] and "http://cb" not in json.dumps(outcome)
    assert all(h["X-GH-Webhook-Signature"] == sign(SECRET, b"{}") for _, _, h in sent)


def test_callback_stops_on_success_or_a_client_error() -> None:
    answers = iter([503, 200])
    outcome = callback.send("http://cb", SECRET, b"{}", post=lambda *a: next(answers), sleep=lambda s: None)
    assert outcome["delivered"] and outcome["attempts"] == 2
    outcome = callback.send("http://cb", SECRET, b"{}", post=lambda *a: 404, sleep=lambda s: None)
    assert not outcome["delivered"] and outcome["attempts"] == 1 and outcome["error"] == "answered 404"


def test_callback_body() -> None:
    record = {
        "id": 7,
        "status": "rolled back",
        "image_tag": "t",
        "commit_sha": "c",
        "environment": "production",
        "hosts": [{"host": "h1"}],
        "run_url": "u",
        "commit_message": "not sent",
    }
    data = json.loads(callback.body_for(record))
    assert data["event"] == "ghosthands.deploy_finished"
    assert {k: data[k] for k in ("id", "status", "image_tag", "commit_sha", "environment", "hosts", "run_url")} == {
        k: record[k] for k in ("id", "status", "image_tag", "commit_sha", "environment", "hosts", "run_url")
    }


# --- settings ----------------------------------------------------------------------------------


def config(tmp_path: Path, text: str = "") -> Config:
    env_file = tmp_path / ".env.deploy"
    env_file.write_text(text)
    return Config(values={}, sources={}, env_file=env_file)


def test_settings_from_env_file_and_environment(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"DEPLOY_WEBHOOK_SECRET={SECRET}\nDEPLOY_API_TOKEN=from-file-0123456789\n")
    settings = server_settings(cfg, environ={"DEPLOY_API_TOKEN": TOKEN}, cwd=tmp_path)
    assert settings.webhook_secret == SECRET and settings.api_token == TOKEN  # environment wins
    assert settings.database_url == f"sqlite:///{tmp_path}/ghdeploy-serve.db"
    assert settings.max_age == 300 and settings.callback_url is None


def test_settings_problems_never_show_secret_values(tmp_path: Path) -> None:
    cfg = config(tmp_path, "DEPLOY_WEBHOOK_SECRET=short\nDATABASE_URL=mysql://u:hunter2@h/db\nWEBHOOK_MAX_AGE=x\n")
    with pytest.raises(ConfigError) as caught:
        server_settings(cfg, environ={}, cwd=tmp_path)
    text = " ".join(caught.value.problems)
    assert "DEPLOY_API_TOKEN is not set" in text and "DEPLOY_WEBHOOK_SECRET is shorter" in text
    assert "DATABASE_URL" in text and "WEBHOOK_MAX_AGE" in text
    assert "short" not in text.replace("shorter", "") and "hunter2" not in text
    assert resolve(cfg, ("WEBHOOK_MAX_AGE",), environ={"WEBHOOK_MAX_AGE": "60"}) == {"WEBHOOK_MAX_AGE": "60"}


# --- lean laptop install ---------------------------------------------------------------------


def test_help_and_notify_do_not_import_the_server_libraries() -> None:
    code = (
        "import sys\n"
        "from ghdeploy import cli\n"
        "from ghdeploy.commands import notify\n"
        "from ghdeploy.server import auth, payload, settings\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'sqlalchemy', 'psycopg') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_serve_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'uvicorn', 'sqlalchemy'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n in ('starlette', 'uvicorn', 'sqlalchemy') else real(n, *a)\n"
        "from ghdeploy import cli\n"
        "sys.exit(cli.main(['serve']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'ghdeploy[server]'" in proc.stderr and "Traceback" not in proc.stderr


def test_secrets_have_no_flags() -> None:
    from typer.testing import CliRunner

    from ghdeploy.cli import app

    for command in ("serve", "notify"):
        text = CliRunner().invoke(app, [command, "--help"]).output
        assert "--secret" not in text and "--token" not in text and "--database" not in text


def test_sent_at_window_uses_now() -> None:
    fresh = payload.parse(body())
    payload.check(fresh, EXPECT, datetime.now(UTC))
    with pytest.raises(payload.Refusal):
        payload.check(fresh, EXPECT, datetime.now(UTC) + timedelta(seconds=301))


# --- notify ------------------------------------------------------------------------------------


def test_notify_url_may_be_the_base_or_the_webhook() -> None:
    from ghdeploy.commands.notify import deploy_url, github_run_url, webhook_url

    hook = "https://deploy.example.com/api/v1/webhooks/ghosthands/deploy"
    assert webhook_url("https://deploy.example.com") == hook
    assert webhook_url("https://deploy.example.com/") == hook
    assert webhook_url(hook) == hook
    assert (
        webhook_url("http://10.0.0.5:8080/ghdeploy")
        == "http://10.0.0.5:8080/ghdeploy/api/v1/webhooks/ghosthands/deploy"
    )
    assert deploy_url(hook, 7) == "https://deploy.example.com/api/v1/deploys/7"
    for bad in ("deploy.example.com", "ftp://x", "https://"):
        with pytest.raises(ConfigError):
            webhook_url(bad)
    github = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42"}
    assert github_run_url(github) == "https://github.com/o/r/actions/runs/42"
    assert github_run_url({}) == ""


def test_stopping_the_receiver_stops_the_running_deploy_at_a_safe_point(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'q.db'}", "production", "a:1")
    store.create()
    fake = FakeDeploys()
    fake.release.clear()  # the deploy runs until it is cancelled
    queue = DeployQueue(store, fake, poll=0.05)
    queue.start()
    deploy_id, _ = store.add(request("t1"), "x1")
    queue.wake()
    assert fake.started.wait(5)
    later, _ = store.add(request("t2"), "x2")
    assert queue.stop(timeout=10)  # what SIGTERM does once uvicorn stopped taking requests
    record = store.get(deploy_id)
    assert record is not None and record["status"] == "interrupted"
    queued = store.get(later)
    assert queued is not None and queued["status"] == "queued"  # left for the next receiver to run


def test_a_database_outage_is_503_and_records_nothing(receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    client, fake, store = receiver

    def down(*args: Any) -> Any:
        raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "add", down)
    answer = post(client, body())
    assert answer.status_code == 503 and "try again" in answer.json()["error"]
    assert fake.calls == []


def test_a_missing_tag_from_a_webhook_is_named_as_the_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's deploy says where its tag came from (not "HEAD's short SHA", the CLI's default)."""

    from ghdeploy.commands import deploy as deploy_command
    from ghdeploy.errors import PreflightError
    from ghdeploy.server.deployer import fleet_deploy

    seen: dict[str, object] = {}

    def fake_deploy(*args: object, **kwargs: object) -> object:
        seen.update(kwargs)
        raise PreflightError(f"{kwargs['tag_source']} 'v9': no such tag")

    monkeypatch.setattr(deploy_command, "deploy", fake_deploy)
    run = fleet_deploy(None, Path("."))  # type: ignore[arg-type]  # the config only reaches deploy()
    outcome = run({"image_tag": "v9", "id": 1}, None, threading.Event())
    assert seen["tag"] == "v9" and seen["tag_source"] == "the webhook's image_tag"
    assert outcome.status == "failed" and outcome.error.startswith("the webhook's image_tag 'v9'")
