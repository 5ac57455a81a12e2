"""Every command's --json document matches the JSON Schema kept in docs/json-schema/.

The documents are made the way the CLI makes them (the renderer, fed with results produced by
the real code where it can run without a host), so a shape that drifts from the schema fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ghdeploy import locks, render, render_hosts
from ghdeploy.commands.history import HostHistory
from ghdeploy.commands.lock import HostLock
from ghdeploy.engine.host import run_host
from ghdeploy.engine.plan import plan_host
from ghdeploy.environment import Environment
from ghdeploy.errors import ConfigError, OperationFailed
from ghdeploy.hosts import Host
from ghdeploy.images import BuildOutcome, PushOutcome
from ghdeploy.results import Action, DeployReport, FleetResult
from ghdeploy.status import host_status
from ghdeploy.version_check import VerifyRow
from tests.unit.test_dry_run import LAYOUT, TARGET, FakeDockerHost, operation

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "json-schema" / "ghdeploy.schema.json"
SHA = "0123456789abcdef0123456789abcdef01234567"


def json_env() -> Environment:
    """A run with --json, on the streams pytest captures now."""
    return Environment(json=True)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def emitted(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


def build() -> BuildOutcome:
    return BuildOutcome("v2", "reg/gh", "sha256:" + "2" * 64, SHA, "2026-11-27T03:00:00Z", ["reg/gh:v2"], False, 1.5)


def push() -> PushOutcome:
    return PushOutcome("v2", "reg/gh", "sha256:" + "e" * 64, ["reg/gh:v2", "reg/gh:latest"], 2.5)


def deployed_fleet() -> FleetResult:
    host = FakeDockerHost()
    result = run_host(operation(), host, TARGET)
    assert result.succeeded
    return FleetResult(action=Action.DEPLOY, target=TARGET, hosts=[result])


def documents(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []

    def add(fn: Any, *args: Any) -> None:
        fn(*args)
        docs.append(emitted(capsys))

    add(render.build_result, build(), json_env())
    add(render.push_result, push(), json_env())
    verify = [VerifyRow("ec2-user@10.0.0.1", SHA, running=SHA, image_tag="v2"), VerifyRow("b", SHA, error="down")]
    full = DeployReport(tag="v2", build=build(), push=push(), fleet=deployed_fleet(), verify=verify)
    full.timings = {"build": 1.0, "push": 2.0, "deploy": 3.0}
    add(render.deploy_report, full, json_env(), "deploy")
    add(render.deploy_report, DeployReport(tag="v2", push=push()), json_env(), "deploy")  # --push-only
    plan = DeployReport(tag="v2", plan=[plan_host(operation(), FakeDockerHost(targeted=True), TARGET, "deploy")])
    add(render.deploy_report, plan, json_env(), "deploy")
    back = DeployReport(tag="previous", plan=[plan_host(operation(), FakeDockerHost(pulled=True), TARGET, "rollback")])
    add(render.deploy_report, back, json_env(), "rollback")
    rolled = deployed_fleet()
    rolled.action = Action.ROLLBACK
    add(render.deploy_report, DeployReport(tag="previous", fleet=rolled), json_env(), "rollback")

    host = FakeDockerHost()
    run_host(operation(), host, TARGET)
    status = host_status(host, LAYOUT, 3100, 3101)  # type: ignore[arg-type]
    add(render_hosts.status_table, [status], json_env())
    add(render_hosts.verify_table, verify, json_env())
    records = [json.loads(line) for line in host.files[LAYOUT.history_file].splitlines()]
    add(
        render_hosts.history_table,
        [HostHistory(host="a", records=records), HostHistory(host="b", error="down")],
        json_env(),
    )
    holder = locks.lock_info("al@laptop", "deploy", "v2", "why")
    for command in ("lock status", "lock release"):
        rows = [HostLock(host="a", holder=holder, released=command == "lock release"), HostLock(host="b", error="x")]
        add(render_hosts.lock_table, rows, json_env(), command)
    add(
        render_hosts.hosts_list,
        [Host("10.0.0.1", "ec2-user"), Host("10.0.0.2", "ec2-user", 2222)],
        ["i-1: no address"],
        "EC2_HOST",
        json_env(),
    )
    from ghdeploy.prune import PrunePlan, PruneResult, Removal

    kept = PrunePlan(keep={"sha256:" + "a" * 64: "release 1 of the last 1 in the history"})
    kept.remove.append(Removal("sha256:" + "b" * 64, ["reg/gh:v1"], 10, untag_only=False))
    pruned = [PruneResult("a", plan=kept, removed=["sha256:" + "b" * 64]), PruneResult("b", errors=["down"])]
    add(render.prune_table, pruned, json_env())
    add(render.prune_table, [PruneResult("a", plan=kept, dry_run=True)], json_env())
    add(render.error_json, ConfigError("EC2_HOST is not set", "set it in .env.deploy"))
    add(render.error_json, OperationFailed("boom"))
    return docs


def test_every_json_document_matches_the_schema(
    validator: jsonschema.Draft202012Validator, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = documents(capsys)
    commands = {d["command"] for d in docs}
    assert commands >= {"build", "push", "deploy", "rollback", "status", "verify", "history", "hosts", "error"}
    assert commands >= {"lock status", "lock release"}
    for doc in docs:
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['command']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )


def test_the_schema_catches_a_drifted_shape(
    validator: jsonschema.Draft202012Validator, capsys: pytest.CaptureFixture[str]
) -> None:
    render.push_result(push(), json_env())
    doc = emitted(capsys)
    assert validator.is_valid(doc)
    assert not validator.is_valid({**doc, "extra": 1})  # a key nobody documented
    assert not validator.is_valid({k: v for k, v in doc.items() if k != "digest"})  # a key gone
    assert not validator.is_valid({**doc, "seconds": "2.5"})  # a type changed
    render.deploy_report(DeployReport(tag="v2", fleet=deployed_fleet()), json_env(), "deploy")
    doc = emitted(capsys)
    doc["deploy"]["hosts"][0]["started"] = "now"
    assert not validator.is_valid(doc)


def test_the_readme_names_the_schema_file() -> None:
    readme = (SCHEMA_FILE.parents[2] / "README.md").read_text()
    assert "docs/json-schema/ghdeploy.schema.json" in readme
