"""The missing-tag message stays cheap at any repository size (dates cost two requests a tag on a
registry without ECR's DescribeImages) and keeps its closest tags, dated, and the tag count."""

from __future__ import annotations

from typing import Any

import pytest

from ghdeploy import registry


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"tags": [], "ecr": {}, "dated": []}
    monkeypatch.setattr(registry, "list_tags", lambda auth, repository: list(state["tags"]))
    monkeypatch.setattr(registry, "pushed_at", lambda region, repository: dict(state["ecr"]))

    def dates(auth: Any, repository: str, tags: list[str]) -> dict[str, str]:
        state["dated"].append(list(tags))
        return {t: f"2026-11-{int(t.split('-')[1]) % 28 + 1:02d}T10:00:00Z" for t in tags if "-" in t}

    monkeypatch.setattr(registry, "_pushed_at", dates)
    return state


def test_a_large_plain_registry_dates_only_the_closest_tags(repo: dict[str, Any]) -> None:
    repo["tags"] = [f"release-{n}" for n in range(98)] + ["latest"]
    text = registry.tag_suggestions(None, "app", "relaese-42", "us-east-1")  # type: ignore[arg-type]
    assert len(repo["dated"]) == 1 and len(repo["dated"][0]) <= registry.DATED_TAGS
    assert "closest: release-42 (2026-11-" in text
    assert "newest" not in text  # 90 tags' dates unknown: "newest" would be a guess
    assert "99 tags in all" in text


def test_a_small_plain_registry_still_lists_the_newest(repo: dict[str, Any]) -> None:
    repo["tags"] = ["release-1", "release-2", "other", "latest"]
    text = registry.tag_suggestions(None, "app", "release-3", "us-east-1")  # type: ignore[arg-type]
    assert repo["dated"] == [["release-1", "release-2", "other"]]
    assert "newest: release-2 (2026-11-03 10:00), release-1 (2026-11-02 10:00)" in text


def test_ecr_dates_every_tag_in_one_call_and_reads_no_manifest(repo: dict[str, Any]) -> None:
    repo["tags"] = [f"release-{n}" for n in range(98)]
    repo["ecr"] = {f"release-{n}": f"2026-10-{n % 28 + 1:02d}T00:00:00Z" for n in range(98)}
    text = registry.tag_suggestions(None, "app", "release-100", "us-east-1")  # type: ignore[arg-type]
    assert repo["dated"] == []
    assert "newest: release-27 (2026-10-28 00:00)" in text and "98 tags in all" in text
