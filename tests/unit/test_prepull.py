"""The fleet deploy pulls on every host first (bounded), and a failed pull stops it before any switch."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from ghdeploy.engine import host as engine
from ghdeploy.engine import prepull as engine_prepull
from ghdeploy.errors import OperationFailed
from tests.unit.test_deploy_logic import TARGET, FakeConn, Steps, operation

HOSTS = ["h1", "h2", "h3"]


def conns(labels: list[str]) -> Any:
    return {label: FakeConn(label) for label in labels}


def test_every_host_pulls_before_any_host_is_drained(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    result, _ = engine_prepull.pull_then_roll(operation(), conns(HOSTS), HOSTS, lambda _label: TARGET, batch=1)
    assert result.succeeded
    # Three pulls up front; each host's turn takes the image ID the pre-pull found (no second check).
    assert steps.calls[:3] == ["pull", "pull", "pull"] and "drain" in steps.calls
    assert steps.calls.count("pull") == 3
    assert steps.calls.count("switch") == 3


def test_a_host_not_pre_pulled_for_this_target_checks_its_image_in_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    op = operation()
    other = dataclasses.replace(TARGET, ref=TARGET.ref + "-other")
    op.present["h1"] = (other, "sha256:" + "c" * 64)  # pre-pulled, but another target
    result = engine.run_host(op, FakeConn("h1"), TARGET)
    assert result.succeeded
    assert steps.calls.count("pull") == 1  # checked (and found) in the host's turn
    assert "h1" not in op.present


def test_a_failed_pull_stops_the_deploy_before_any_host_is_switched(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)

    def pull(op: engine.Operation, conn: FakeConn, target: engine.Target) -> str:
        steps.calls.append(f"pull {conn.host.label}")
        if conn.host.label == "h2":
            raise OperationFailed(f"{conn.host.label}: docker compose pull failed: manifest unknown")
        return "sha256:" + "b" * 64

    monkeypatch.setattr(engine, "ensure_image", pull)
    result, _ = engine_prepull.pull_then_roll(operation(), conns(HOSTS), HOSTS, lambda _label: TARGET, batch=1)
    assert sorted(steps.calls) == ["pull h1", "pull h2", "pull h3"]  # no snapshot, drain, switch
    assert not result.succeeded and not result.interrupted
    by_host = {h.host: h for h in result.hosts}
    assert by_host["h2"].result == "failed"
    assert by_host["h2"].error == "pull failed: docker compose pull failed: manifest unknown"
    for label in ("h1", "h3"):
        assert by_host[label].result == "untouched"
        assert by_host[label].notes == ["not switched: the image could not be pulled on h2"]
    assert steps.records == []  # no history written: no host was touched


class PeakPull:
    """A stand-in ensure_image that takes 20 ms and remembers how many ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, op: engine.Operation, conn: FakeConn, target: engine.Target) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        return "sha256:" + "b" * 64


def test_pulls_run_in_parallel_but_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    pull = PeakPull()
    monkeypatch.setattr(engine, "ensure_image", pull)
    labels = [f"h{n}" for n in range(12)]
    assert engine_prepull.prepull(operation(), conns(labels), labels, lambda _label: TARGET, limit=4) is None
    assert 1 < pull.peak <= 4


def test_interrupted_during_the_pulls_switches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    cancel = threading.Event()

    def pull(op: engine.Operation, conn: FakeConn, target: engine.Target) -> str:
        cancel.set()  # Ctrl-C while the images download
        return "sha256:" + "b" * 64

    monkeypatch.setattr(engine, "ensure_image", pull)
    result, _ = engine_prepull.pull_then_roll(operation(cancel), conns(HOSTS), HOSTS, lambda _label: TARGET, batch=1)
    assert result.interrupted and not result.succeeded
    assert all(h.result == "untouched" for h in result.hosts)
    assert "drain" not in steps.calls and "switch" not in steps.calls


def test_pull_parallel_bounds_the_fleet_deploys_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    """PULL_PARALLEL reaches the pre-pull through pull_then_roll: 1 pulls host after host."""
    pull = PeakPull()
    Steps(monkeypatch)
    monkeypatch.setattr(engine, "ensure_image", pull)
    labels = [f"h{n}" for n in range(4)]
    result, _ = engine_prepull.pull_then_roll(
        operation(), conns(labels), labels, lambda _label: TARGET, batch=1, pull_limit=1
    )
    assert result.succeeded and pull.peak == 1


def test_pull_parallel_is_a_checked_key(tmp_path: Any) -> None:
    from ghdeploy.config import load_config
    from ghdeploy.errors import ConfigError

    assert load_config(needs=("PULL_PARALLEL",), environ={}, cwd=tmp_path).number("PULL_PARALLEL") == 16
    with pytest.raises(ConfigError, match="PULL_PARALLEL"):
        load_config(needs=("PULL_PARALLEL",), environ={"PULL_PARALLEL": "0"}, cwd=tmp_path)
