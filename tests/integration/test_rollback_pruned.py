"""`rollback` to a release a deploy pruned from the host (testbed host h1): the image is pulled
back from the registry by the exact digest the host's history recorded; when the registry has
lost it too, the rollback is refused before anything is touched, with the digest named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Cli, api_image_id, commit, host_docker
from tests.integration.test_guardian import TIMEOUTS

H1 = "root@10.77.1.2"
HISTORY = Path("/var/lib/ghtb/h1/opt/.ghdeploy/history.jsonl")


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Cli:
    clean_hosts("h1")
    return cli_factory(EC2_HOST=H1, **TIMEOUTS)


def deploy(h1: Cli, repo: Path, name: str) -> str:
    commit(repo, name)
    proc = h1("deploy")
    assert proc.returncode == 0, proc.stderr
    return api_image_id("h1")


def present(image_id: str) -> bool:
    return host_docker("h1", "image", "inspect", "--format", "{{.Id}}", image_id, check=False) == image_id


def test_rollback_pulls_a_pruned_release_back_by_its_recorded_digest(h1: Cli, app_repo: Path) -> None:
    v1 = deploy(h1, app_repo, "v1")
    v2 = deploy(h1, app_repo, "v2")
    host_docker("h1", "rmi", "-f", v1)  # what a prune past RETAIN_RELEASES does
    assert not present(v1)
    recorded = json.loads(HISTORY.read_text().splitlines()[-1])["from"]["repo_digest"]

    plan = h1("rollback", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "no longer on the host" in plan.stderr and "recorded digest" in plan.stderr
    assert not present(v1)  # a dry run pulls nothing

    proc = h1("rollback")
    assert proc.returncode == 0, proc.stderr
    assert f"pulling it back from the registry by its recorded digest {recorded.split('@')[1]}" in proc.stderr
    assert api_image_id("h1") == v1 != v2
    last = json.loads(HISTORY.read_text().splitlines()[-1])
    assert last["action"] == "rollback" and last["result"] == "succeeded" and last["image_id"] == v1


def test_rollback_refuses_a_pruned_release_the_registry_lost_too(h1: Cli, app_repo: Path) -> None:
    v1 = deploy(h1, app_repo, "v1")
    v2 = deploy(h1, app_repo, "v2")
    host_docker("h1", "rmi", "-f", v1)
    # The registry no longer has it (an ECR lifecycle policy expired it): its digest names nothing.
    lost = "sha256:" + "0" * 64
    lines = HISTORY.read_text().splitlines()
    last = json.loads(lines[-1])
    name = last["from"]["repo_digest"].split("@")[0]
    last["from"]["repo_digest"] = f"{name}@{lost}"
    HISTORY.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")

    proc = h1("rollback")
    assert proc.returncode == 2, proc.stderr
    assert "no longer on the host" in proc.stderr and f"{name}@{lost} is not there any more" in proc.stderr
    assert "rollback --to TAG" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert api_image_id("h1") == v2  # nothing touched
