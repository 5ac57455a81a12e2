"""The decisions of the per-host sequence and the rolling fleet, with the host steps faked."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.engine import fleet as engine_fleet
from ghdeploy.engine import host as engine
from ghdeploy.errors import OperationFailed
from ghdeploy.hostops import ImageRecord, ServiceState, Snapshot
from ghdeploy.hosts import Host
from ghdeploy.progress import RecordingReporter
from ghdeploy.records import HistoryRecord, PendingRecord
from ghdeploy.results import Action, Result
from ghdeploy.transports.base import CommandResult, Remote
from ghdeploy.transports.http11 import Client
from ghdeploy.waiting import Cancelled, Clock

LAYOUT = rc.RemoteLayout(app_dir="/opt/ghosthands", compose_file="/opt/ghosthands/docker-compose.prod.yml")
OLD = ImageRecord(image_id="sha256:" + "a" * 64, ref="reg/gh:old", repo_digest="reg/gh@sha256:" + "1" * 64)
TARGET = engine.Target(ref="reg/gh:new", label="gh:new", digest="sha256:" + "2" * 64)


class FakeConn:
    """A Remote whose commands are never run: every host-touching step is replaced (Steps)."""

    def __init__(self, label: str) -> None:
        self.host = Host(hostname=label)

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        raise AssertionError(f"a faked step let a command through: {argv}")

    check = run

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> None:
        return None  # no Engine API: the docker CLI's commands are what this fake answers

    def http_client(self, timeout: float = 5.0) -> Client:
        raise AssertionError("a faked step let an HTTP request through")


class Steps:
    """Replaces the host-touching steps; records the order they ran in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: dict[str, BaseException] | None = None) -> None:
        self.calls: list[str] = []
        self.records: list[HistoryRecord] = []
        self.fail = fail or {}
        self.unfinished: dict[str, Any] | None = None
        snapshot = Snapshot(services={"api": ServiceState("api", "c1", "running", "healthy", OLD)})

        def step(name: str, result: Any = None) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                if name in self.fail:
                    raise self.fail[name]
                return result

            return run

        monkeypatch.setattr(hostops, "read_snapshot", step("snapshot", snapshot))
        monkeypatch.setattr(hostops, "write_pending", step("pending"))
        monkeypatch.setattr(hostops, "read_pending", step("read_pending", self.unfinished))
        monkeypatch.setattr(hostops, "clear_pending", step("clear_pending"))

        def append_record(
            conn: Remote,
            layout: rc.RemoteLayout,
            record: HistoryRecord | dict[str, Any],
            *,
            clear_pending: bool = False,
        ) -> None:
            assert isinstance(record, HistoryRecord)  # the engine writes typed records
            self.records.append(record)
            if clear_pending:  # the same command ends pending.json
                self.calls.append("clear_pending")

        monkeypatch.setattr(hostops, "append_record", append_record)
        monkeypatch.setattr(engine, "ensure_image", step("pull", "sha256:" + "b" * 64))
        monkeypatch.setattr(engine, "drain_all", step("drain", []))
        monkeypatch.setattr(engine, "switch_to", step("switch"))
        monkeypatch.setattr(engine, "wait_healthy", step("health", 0.1))
        monkeypatch.setattr(engine, "check_running", step("check"))
        monkeypatch.setattr(engine, "restore", step("restore", OLD.image_id))


def operation(cancel: threading.Event | None = None) -> engine.Operation:
    return engine.Operation(
        layout=LAYOUT,
        reporter=RecordingReporter(),
        api_port=3100,
        worker_port=3101,
        health_timeout=5,
        drain_timeout=5,
        stop_timeout=5,
        clock=Clock(),
        cancel=cancel or threading.Event(),
        operator="tester@laptop",
    )


def test_success_runs_every_step_in_order_and_records_it(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    result = engine.run_host(operation(), FakeConn("h1"), TARGET)
    assert result.result == "succeeded"
    assert steps.calls == [
        "snapshot",
        "read_pending",
        "pending",
        "pull",
        "drain",
        "switch",
        "health",
        "check",
        "clear_pending",
    ]
    assert result.from_image == OLD
    assert steps.records[-1].result == "succeeded" and steps.records[-1].operator == "tester@laptop"
    assert set(result.phases) == {"record", "pull", "drain", "switch", "health"}


def test_a_failed_pull_changes_nothing_and_does_not_roll_back(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch, fail={"pull": OperationFailed("h1: docker compose pull failed")})
    result = engine.run_host(operation(), FakeConn("h1"), TARGET)
    assert result.result == "failed"
    assert "restore" not in steps.calls and "switch" not in steps.calls
    assert result.error == "docker compose pull failed"  # the host label is not repeated
    assert steps.records[-1].result == "failed"


def test_an_unhealthy_image_is_rolled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch, fail={"health": OperationFailed("h1: /health did not answer 200 within 5s")})
    result = engine.run_host(operation(), FakeConn("h1"), TARGET)
    assert result.result == "rolled back"
    assert steps.calls[-2:] == ["restore", "clear_pending"]
    assert result.image_id == OLD.image_id
    assert "rollback" in result.phases
    assert steps.records[-1].result == "rolled back"


def test_a_failed_rollback_is_reported_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(
        monkeypatch,
        fail={
            "switch": OperationFailed("h1: docker compose up failed"),
            "restore": OperationFailed("h1: the previous image is no longer on the host"),
        },
    )
    op = operation()
    result = engine.run_host(op, FakeConn("h1"), TARGET)
    assert result.result == "rollback failed"
    assert any("rollback failed: the previous image" in n for n in result.notes)
    assert any("ROLLBACK FAILED" in w for w in op.reporter.messages("warn"))  # type: ignore[attr-defined]
    assert steps.records[-1].result == "rollback failed"


def test_interrupt_before_the_switch_leaves_the_host_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    cancel = threading.Event()
    steps = Steps(monkeypatch)

    def pull_then_interrupt(*args: Any, **kwargs: Any) -> str:
        steps.calls.append("pull")
        cancel.set()
        return "sha256:" + "b" * 64

    monkeypatch.setattr(engine, "ensure_image", pull_then_interrupt)
    result = engine.run_host(operation(cancel), FakeConn("h1"), TARGET)
    assert result.result == "untouched" and result.error == "interrupted"
    assert "drain" not in steps.calls and "restore" not in steps.calls


def test_interrupt_mid_switch_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch, fail={"health": Cancelled()})
    result = engine.run_host(operation(), FakeConn("h1"), TARGET)
    assert result.result == "rolled back" and result.error == "interrupted"
    assert "restore" in steps.calls


def test_rolling_stops_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def fake_run_host(
        op: engine.Operation, conn: Any, target: engine.Target, action: Action | str = Action.DEPLOY
    ) -> engine.HostResult:
        ran.append(conn.host.hostname)
        result = Result.ROLLED_BACK if conn.host.hostname == "h2" else Result.SUCCEEDED
        return engine.HostResult(host=conn.host.hostname, action=Action(action), result=result, target=target)

    monkeypatch.setattr(engine_fleet, "run_host", fake_run_host)
    conns = {name: FakeConn(name) for name in ("h1", "h2", "h3", "h4")}
    fleet = engine_fleet.rolling(operation(), conns, list(conns), lambda label: TARGET, 1, "deploy")
    assert ran == ["h1", "h2"]
    assert [h.result for h in fleet.hosts] == ["succeeded", "rolled back", "untouched", "untouched"]
    assert fleet.counts() == {
        "total": 4,
        "succeeded": 1,
        "rolled back": 1,
        "rollback failed": 0,
        "failed": 0,
        "untouched": 2,
        "abandoned": 0,
        "unconfirmed": 0,
    }
    assert int(fleet.exit_code) == 1
    assert any("not reached" in n for n in fleet.hosts[2].notes)


def test_rolling_in_batches_and_interruption(monkeypatch: pytest.MonkeyPatch) -> None:
    cancel = threading.Event()
    ran: list[str] = []

    def fake_run_host(
        op: engine.Operation, conn: Any, target: engine.Target, action: Action | str = Action.DEPLOY
    ) -> engine.HostResult:
        ran.append(conn.host.hostname)
        if conn.host.hostname == "h2":
            cancel.set()
        return engine.HostResult(host=conn.host.hostname, action=Action(action), result=Result.SUCCEEDED, target=target)

    monkeypatch.setattr(engine_fleet, "run_host", fake_run_host)
    conns = {name: FakeConn(name) for name in ("h1", "h2", "h3", "h4")}
    fleet = engine_fleet.rolling(operation(cancel), conns, list(conns), lambda label: TARGET, 2, "deploy")
    assert sorted(ran) == ["h1", "h2"]
    assert fleet.interrupted and int(fleet.exit_code) == 130
    assert [h.result for h in fleet.hosts] == ["succeeded", "succeeded", "untouched", "untouched"]


def test_an_unfinished_deploy_found_on_the_host_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    monkeypatch.setattr(
        hostops,
        "read_pending",
        lambda conn, layout: {"action": "deploy", "time": "2026-11-26T03:00:00Z", "operator": "al@lap"},
    )
    op = operation()
    result = engine.run_host(op, FakeConn("h1"), TARGET)
    assert result.result == "succeeded"
    assert any("unfinished deploy from 2026-11-26T03:00:00Z by al@lap" in n for n in result.notes)
    assert any("unfinished deploy" in w for w in op.reporter.messages("warn"))  # type: ignore[attr-defined]
    assert "restore" not in steps.calls


def test_rollback_target_walks_back_through_deploys() -> None:
    from ghdeploy.commands.rollback import previous_from_history

    def rec(action: str, result: str, frm: str | None, to: str) -> dict[str, Any]:
        return {"action": action, "result": result, "from": {"image_id": frm} if frm else None, "image_id": to}

    history = [
        rec("deploy", "succeeded", None, "A"),
        rec("deploy", "succeeded", "A", "B"),
        rec("deploy", "rolled back", "B", "B"),  # a failed deploy of C that was put back to B
        rec("deploy", "succeeded", "B", "C"),
        rec("rollback", "succeeded", "C", "B"),
    ]
    previous = previous_from_history(history, "B")
    assert previous is not None and previous.image_id == "A"
    previous = previous_from_history(history, "C")
    assert previous is not None and previous.image_id == "B"
    assert previous_from_history(history, "A") is None  # the first deploy: nothing before it
    assert previous_from_history(history, "Z") is None  # not deployed by ghdeploy
    assert previous_from_history([], None) is None


def test_rollback_skips_same_image_redeploys_and_counts_guardian_kept() -> None:
    from ghdeploy.commands.rollback import previous_from_history

    def rec(result: str, frm: str, to: str, **extra: Any) -> dict[str, Any]:
        return {"action": "deploy", "result": result, "from": {"image_id": frm}, "image_id": to, **extra}

    # B deployed over A, then the same fleet deploy run again: B over B.
    history = [rec("succeeded", "A", "B"), rec("succeeded", "B", "B")]
    previous = previous_from_history(history, "B")
    assert previous is not None and previous.image_id == "A"
    # A killed deploy whose guardian kept the new image C put C there as much as a success would.
    history.append(rec("abandoned", "B", "C", guardian="kept"))
    previous = previous_from_history(history, "C")
    assert previous is not None and previous.image_id == "B"
    # One whose guardian put B back did not.
    assert previous_from_history([rec("abandoned", "B", "B", guardian="restored")], "B") is None


def test_rollback_point_prefers_a_killed_deploys_known_good_image() -> None:
    from ghdeploy.commands.rollback import rollback_point

    history = [{"action": "deploy", "result": "succeeded", "from": {"image_id": "A"}, "image_id": "B"}]
    pending = {"action": "deploy", "time": "2026-11-27T03:00:00Z", "from": {"image_id": "B", "ref": "r/app:b"}}
    # Killed while switching B -> C: C runs, unproven; B is the known-good point, not A.
    point, why = rollback_point(history, pending, "C")
    assert point is not None and point.image_id == "B" and point.ref == "r/app:b"
    assert "unfinished deploy of 2026-11-27T03:00:00Z" in why
    # Killed before anything changed: B still runs, so the history walk decides (A).
    point, _ = rollback_point(history, pending, "B")
    assert point is not None and point.image_id == "A"
    # Nothing recorded at all: nothing to roll back to (said by the caller).
    assert rollback_point([], None, "B") == (None, "")


def test_a_killed_deploys_known_good_image_is_the_next_deploys_rollback_point() -> None:
    from ghdeploy.engine.host import known_good
    from ghdeploy.hostops import ImageRecord, ServiceState, Snapshot

    running = ImageRecord(image_id="sha256:c", ref="r/app:c")
    snapshot = Snapshot(services={"api": ServiceState("api", "id", "running", "", running)})
    pending = {"from": {"image_id": "sha256:b", "ref": "r/app:b"}}
    point = known_good(pending, snapshot)
    assert point is not None and point.image_id == "sha256:b"
    assert known_good(None, snapshot) == running
    assert known_good({"from": None}, snapshot) == running


class FakeGuard:
    """What run_host asks of a host's guardian, recorded."""

    lease = 15

    def __init__(self, calls: list[str], outcome: str | None = "restored", renew_fails: bool = False) -> None:
        self.calls = calls
        self.outcome = outcome
        self.renew_fails = renew_fails
        self.records: list[dict[str, Any]] = []
        self.fired = False

    def arm_switch(self, plan: Any, records: bytes) -> None:
        self.calls.append("arm_switch")

    def fenced(self, via: Any = None) -> Any:
        return "fenced"

    def phase(self, name: str) -> None:
        self.calls.append(f"phase {name}")

    def renew(self) -> None:
        self.calls.append("renew")
        if self.renew_fails:
            from ghdeploy.engine.guardian import GuardianTookOver

            raise GuardianTookOver("h1: took over")

    conn = None

    @contextlib.contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        self.calls.append("hold")
        yield lambda: None
        self.calls.append("unhold")

    def wait_outcome(self, timeout: float) -> str | None:
        self.calls.append("wait_outcome")
        return self.outcome


class LinkConn(FakeConn):
    def __init__(self, label: str, calls: list[str], can_reconnect: bool = True) -> None:
        super().__init__(label)
        self.up = True
        self.calls = calls
        self.can_reconnect = can_reconnect

    def alive(self) -> bool:
        return self.up

    def reconnect(self) -> None:
        self.calls.append("reconnect")
        if not self.can_reconnect:
            from ghdeploy.errors import SSHError

            raise SSHError("h1", "no route to host")
        self.up = True


def guarded(monkeypatch: pytest.MonkeyPatch, steps: Steps, guard: FakeGuard) -> engine.Operation:
    monkeypatch.setattr(engine, "switch_plan", lambda *a, **k: None)
    op = operation()
    op.guards = {"h1": guard}  # type: ignore[dict-item]
    return op


def test_with_a_guardian_changes_are_fenced_phased_and_recorded_in_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    guard = FakeGuard(steps.calls)
    seen: list[Any] = []
    monkeypatch.setattr(engine, "switch_to", lambda op, conn, *a: seen.append(conn))
    result = engine.run_host(guarded(monkeypatch, steps, guard), FakeConn("h1"), TARGET)
    assert result.result == "succeeded"
    assert seen == ["fenced"]  # the switch ran through the fence
    pull = steps.calls.index("pull")
    assert steps.calls[pull + 1 : pull + 3] == ["arm_switch", "drain"]  # arm_switch sets phase changing itself
    assert steps.calls[-4:] == ["phase confirmed", "hold", "clear_pending", "unhold"]
    assert steps.records[-1].result == "succeeded"


def test_when_the_guardian_took_over_we_neither_restore_nor_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghdeploy.engine.guardian import GuardianTookOver

    steps = Steps(monkeypatch, fail={"switch": GuardianTookOver("h1: the host's guardian took over")})
    guard = FakeGuard(steps.calls)
    result = engine.run_host(guarded(monkeypatch, steps, guard), FakeConn("h1"), TARGET)
    assert result.result == "abandoned"
    assert "restore" not in steps.calls and "hold" not in steps.calls and steps.records == []
    assert steps.calls[-1] == "wait_outcome"
    assert any("put back the recorded image" in n for n in result.notes)
    assert result.image_id == OLD.image_id


def test_a_lost_link_is_reconnected_and_we_roll_back_ourselves(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghdeploy.errors import SSHError

    steps = Steps(monkeypatch)
    conn = LinkConn("h1", steps.calls)

    def health(*args: Any, **kwargs: Any) -> float:
        steps.calls.append("health")
        conn.up = False
        raise SSHError("h1", "SSH connection lost")

    monkeypatch.setattr(engine, "wait_healthy", health)
    guard = FakeGuard(steps.calls)
    result = engine.run_host(guarded(monkeypatch, steps, guard), conn, TARGET)
    assert result.result == "rolled back"
    assert steps.calls[-6:] == ["reconnect", "renew", "restore", "hold", "clear_pending", "unhold"]


def test_a_lost_link_after_the_guardian_fired_reports_what_the_host_did(monkeypatch: pytest.MonkeyPatch) -> None:
    from ghdeploy.errors import SSHError

    steps = Steps(monkeypatch)
    conn = LinkConn("h1", steps.calls)

    def switch(*args: Any, **kwargs: Any) -> None:
        conn.up = False
        raise SSHError("h1", "SSH connection lost")

    monkeypatch.setattr(engine, "switch_to", switch)
    guard = FakeGuard(steps.calls, outcome="restored", renew_fails=True)
    result = engine.run_host(guarded(monkeypatch, steps, guard), conn, TARGET)
    assert result.result == "abandoned"
    assert steps.calls[-3:] == ["reconnect", "renew", "wait_outcome"]
    assert "restore" not in steps.calls and steps.records == [] and "hold" not in steps.calls


def _ssh_lost() -> BaseException:
    from ghdeploy.errors import SSHError

    return SSHError("h1", "SSH connection lost")


@pytest.mark.parametrize(
    "lost", [_ssh_lost(), EOFError(), OSError("Socket is closed")], ids=["SSHError", "EOFError", "OSError"]
)
def test_a_host_we_cannot_reach_again_is_unconfirmed_and_left_to_heal(
    monkeypatch: pytest.MonkeyPatch, lost: BaseException
) -> None:
    # Our own SSHError, or paramiko's bare EOFError/OSError when a socket write hits a dead link
    # (click would turn a raw EOFError into "aborted", exit 130, if it left the engine).
    steps = Steps(monkeypatch)
    conn = LinkConn("h1", steps.calls, can_reconnect=False)

    def switch(*args: Any, **kwargs: Any) -> None:
        conn.up = False
        raise lost

    monkeypatch.setattr(engine, "switch_to", switch)
    guard = FakeGuard(steps.calls)
    op = guarded(monkeypatch, steps, guard)
    now = [0.0]
    op.clock = Clock(sleep=lambda s: now.__setitem__(0, now[0] + s), now=lambda: now[0])
    result = engine.run_host(op, conn, TARGET)
    assert result.result == "unconfirmed"
    assert "SSH connection lost" in (result.error or "")
    assert "restore" not in steps.calls and "hold" not in steps.calls
    assert any("puts back old by itself" in n for n in result.notes), result.notes
    assert steps.calls.count("reconnect") > 3


def test_a_raw_eof_mid_switch_with_the_link_back_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(monkeypatch)
    conn = LinkConn("h1", steps.calls)

    def health(*args: Any, **kwargs: Any) -> float:
        conn.up = False
        raise EOFError()

    monkeypatch.setattr(engine, "wait_healthy", health)
    result = engine.run_host(guarded(monkeypatch, steps, FakeGuard(steps.calls)), conn, TARGET)
    assert result.result == "rolled back"
    assert steps.calls[-6:] == ["reconnect", "renew", "restore", "hold", "clear_pending", "unhold"]


def test_the_known_good_chain_survives_a_second_killed_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    Steps(monkeypatch, fail={"health": OperationFailed("h1: /health did not answer 200 within 5s")})
    good = {"image_id": "sha256:" + "9" * 64, "ref": "reg/gh:good"}
    monkeypatch.setattr(hostops, "read_pending", lambda conn, layout: {"time": "t", "known_good": good, "from": {}})
    written: list[PendingRecord] = []

    def write_pending(conn: Remote, layout: rc.RemoteLayout, record: PendingRecord | dict[str, Any]) -> None:
        assert isinstance(record, PendingRecord)
        written.append(record)

    monkeypatch.setattr(hostops, "write_pending", write_pending)
    restored: list[ImageRecord | None] = []

    def restore(op: engine.Operation, conn: Remote, snapshot: Snapshot, point: ImageRecord | None = None) -> str:
        restored.append(point)
        return "x"

    monkeypatch.setattr(engine, "restore", restore)
    result = engine.run_host(operation(), FakeConn("h1"), TARGET)
    assert result.result == "rolled back"
    assert result.from_image == OLD  # what ran, as it was
    assert written[0].extra["known_good"]["image_id"] == good["image_id"]  # carried on, for a third run
    point = restored[0]
    assert (
        point is not None and point.image_id == good["image_id"]
    )  # the failed deploy goes back to the known-good image
