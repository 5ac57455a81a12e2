"""GetAuthorizationToken once per run: push, preflight and every host's pull share one login."""

from __future__ import annotations

import pytest

from ghdeploy.aws import ecr
from ghdeploy.aws.ecr import RegistryAuth


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    ecr._LOGINS.clear()


def test_one_token_for_every_use_while_it_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def login(region: str, reg: str) -> RegistryAuth:
        calls.append((region, reg))
        return RegistryAuth(registry=reg, username="AWS", password=f"token-{len(calls)}", expires_at=1000.0 + 12 * 3600)

    monkeypatch.setattr(ecr, "get_login", login)
    first = ecr.login_once("us-east-1", "r.example", now=lambda: 1000.0)
    again = [ecr.login_once("us-east-1", "r.example", now=lambda: 1000.0 + 60) for _ in range(50)]
    assert calls == [("us-east-1", "r.example")] and all(a is first for a in again)
    # another registry is another login
    ecr.login_once("eu-west-1", "other.example", now=lambda: 1000.0)
    assert len(calls) == 2
    # less than an hour left: a long-running process logs in again
    renewed = ecr.login_once("us-east-1", "r.example", now=lambda: 1000.0 + 11.5 * 3600)
    assert renewed.password == "token-3" and len(calls) == 3


def test_a_token_without_expiry_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def login(region: str, reg: str) -> RegistryAuth:
        calls.append(reg)
        return RegistryAuth(registry=reg, username="AWS", password="t", expires_at=None)

    monkeypatch.setattr(ecr, "get_login", login)
    ecr.login_once("us-east-1", "r.example")
    ecr.login_once("us-east-1", "r.example")
    assert len(calls) == 2
