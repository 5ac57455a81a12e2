"""The fleet table's leases and failed marks, against moto's in-process DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ghdeploy.aws.fleet_table import FleetTable
from ghdeploy.errors import ConfigError

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> Iterator[FleetTable]:
    moto = pytest.importorskip("moto")
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        t = FleetTable("ghdeploy-fleet", "us-east-1", now=lambda: clock[0])
        assert t.create_or_exists() is True
        assert t.create_or_exists() is False  # idempotent
        yield t


def test_one_slot_one_host_until_released(table: FleetTable) -> None:
    first = table.acquire("h1", "tok1", DIGEST, batch=1, ttl=60)
    assert first is not None and first.slot == 0
    assert table.acquire("h2", "tok2", DIGEST, batch=1, ttl=60) is None
    assert [h["holder"] for h in table.holders(1)] == ["h1"]
    assert table.release(first) is True
    assert table.acquire("h2", "tok2", DIGEST, batch=1, ttl=60) is not None


def test_batch_two_lets_two_hosts_switch(table: FleetTable) -> None:
    assert table.acquire("h1", "t1", DIGEST, batch=2, ttl=60) is not None
    second = table.acquire("h2", "t2", DIGEST, batch=2, ttl=60)
    assert second is not None and second.slot == 1
    assert table.acquire("h3", "t3", DIGEST, batch=2, ttl=60) is None


def test_a_dead_holders_lease_expires_and_its_late_release_is_refused(table: FleetTable, clock: list[float]) -> None:
    dead = table.acquire("h1", "t1", DIGEST, batch=1, ttl=60)
    assert dead is not None
    clock[0] += 30
    assert table.acquire("h2", "t2", DIGEST, batch=1, ttl=60) is None
    clock[0] += 31
    taken = table.acquire("h2", "t2", DIGEST, batch=1, ttl=60)
    assert taken is not None
    assert table.renew(dead, 60) is None  # not ours any more
    assert table.release(dead) is False  # and the new holder keeps it
    assert [h["holder"] for h in table.holders(1)] == ["h2"]


def test_renewal_keeps_the_slot(table: FleetTable, clock: list[float]) -> None:
    lease = table.acquire("h1", "t1", DIGEST, batch=1, ttl=60)
    assert lease is not None
    clock[0] += 50
    renewed = table.renew(lease, 60)
    assert renewed is not None
    clock[0] += 50  # past the first expiry, within the renewed one
    assert table.acquire("h2", "t2", DIGEST, batch=1, ttl=60) is None


def test_a_restarted_agent_takes_back_its_own_hosts_slot(table: FleetTable) -> None:
    assert table.acquire("h1", "old-process", DIGEST, batch=1, ttl=60) is not None
    assert table.acquire("h1", "new-process", DIGEST, batch=1, ttl=60) is not None


def test_failed_digests_are_shared(table: FleetTable) -> None:
    assert table.failed(DIGEST) is None
    table.mark_failed(DIGEST, "h1", "/health did not answer 200 within 6s", "2026-01-01T00:00:00Z")
    failed = table.failed(DIGEST)
    assert failed is not None and failed["host"] == "h1" and "health" in failed["reason"]


def test_a_missing_table_says_how_to_create_it(monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws(), pytest.raises(ConfigError, match="does not exist") as err:
        FleetTable("nope-table", "us-east-1").failed(DIGEST)
    assert "ghdeploy agent init-table" in (err.value.hint or "")
