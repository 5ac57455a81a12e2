"""`rollback` to an image a deploy pruned from the host: pulled back by its recorded digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ghdeploy.commands import rollback
from ghdeploy.config import load_config
from ghdeploy.progress import NullReporter
from ghdeploy.results import Target
from ghdeploy.snapshot import ImageRecord

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def config(tmp_path: Path) -> Any:
    environ = {"ECR_REGISTRY": REGISTRY, "ECR_REPOSITORY": "ghosthands", "AWS_REGION": "us-east-1"}
    return load_config(needs=["ECR_REGISTRY", "ECR_REPOSITORY", "AWS_REGION"], environ=environ, cwd=tmp_path)


@pytest.fixture
def logins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def login_once(region: str, registry: str) -> str:
        calls.append(registry)
        return "auth"

    monkeypatch.setattr(rollback.registry, "login_once", login_once)
    return calls


def _old(repo_digest: str | None) -> ImageRecord:
    return ImageRecord(image_id="sha256:" + "1" * 64, ref=f"{REGISTRY}/ghosthands:v1", repo_digest=repo_digest)


def _targets(record: ImageRecord) -> dict[str, Target]:
    return {"h1": Target(ref=record.ref or "", label="ghosthands:v1", digest=None, image_id=record.image_id)}


def test_a_pruned_image_is_pulled_back_by_its_exact_digest(
    config: Any, logins: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def resolve_digest(auth: Any, repo: str, ref: str) -> str:
        asked.append(ref)
        return DIGEST

    monkeypatch.setattr(rollback.registry, "resolve_digest", resolve_digest)
    record = _old(f"{REGISTRY}/ghosthands@{DIGEST}")
    targets, problems = _targets(record), {}  # type: ignore[var-annotated]
    auth = rollback._pull_back_pruned(config, NullReporter(), {"h1": record}, targets, problems)
    assert auth == "auth" and logins == [REGISTRY] and asked == [DIGEST]
    assert problems == {}
    assert targets["h1"] == Target(
        ref=f"{REGISTRY}/ghosthands@{DIGEST}", label="ghosthands:v1", digest=DIGEST, image_id=record.image_id
    )


def test_gone_from_the_registry_too_is_refused_with_the_digest_named(
    config: Any, logins: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollback.registry, "resolve_digest", lambda auth, repo, ref: None)
    record = _old(f"{REGISTRY}/ghosthands@{DIGEST}")
    problems: dict[str, str] = {}
    rollback._pull_back_pruned(config, NullReporter(), {"h1": record}, _targets(record), problems)
    assert "no longer on the host" in problems["h1"] and f"ghosthands@{DIGEST} is not there any more" in problems["h1"]


@pytest.mark.parametrize("repo_digest", [None, f"other.example.com/ghosthands@{DIGEST}"])
def test_without_a_digest_in_this_repository_nothing_is_pulled(
    config: Any, logins: list[str], repo_digest: str | None
) -> None:
    record = _old(repo_digest)
    problems: dict[str, str] = {}
    rollback._pull_back_pruned(config, NullReporter(), {"h1": record}, _targets(record), problems)
    assert "records no digest" in problems["h1"] and logins == []
