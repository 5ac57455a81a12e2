"""Fixtures for tests that run the real CLI against the testbed (scripts/testbed up)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "scripts" / "testbed"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class Cli:
    """Runs `python -m ghdeploy` in a directory with the testbed's settings."""

    cwd: Path
    env: dict[str, str]

    def __call__(
        self, *args: str, timeout: float = 300, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **(extra_env or {}))
        return subprocess.run(
            [sys.executable, "-m", "ghdeploy", *args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def json(self, *args: str, timeout: float = 300, ok_codes: tuple[int, ...] = (0,)) -> dict:
        proc = self("--json", *args, timeout=timeout)
        assert proc.returncode in ok_codes, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
        return json.loads(proc.stdout)


def schema_errors(doc: object, definition: str | None = None) -> list[str]:
    """Where `doc` departs from docs/json-schema: the whole schema (a --json document), or one
    of its $defs (`server_deploy`, `agent_event`, ...)."""
    import jsonschema

    full = json.loads((REPO / "docs" / "json-schema" / "ghdeploy.schema.json").read_text())
    target = full if definition is None else {"$ref": f"#/$defs/{definition}", "$defs": full["$defs"]}
    found = jsonschema.Draft202012Validator(target).iter_errors(doc)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found][:5]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str] | None = None) -> str:
    """Change files (default: bump a VERSION file) and commit; return the full SHA."""
    for name, text in (files or {"VERSION": message}).items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_broken(repo: Path) -> str:
    dockerfile = (repo / "Dockerfile").read_text().replace("ARG BROKEN=0", "ARG BROKEN=1")
    return commit(repo, "broken health", {"Dockerfile": dockerfile})


def host_docker(name: str, *args: str, check: bool = True) -> str:
    """docker against a testbed host's own engine (h1, h2, ...)."""
    proc = subprocess.run(
        ["docker", "-H", f"unix:///run/ghtb/{name}/docker.sock", *args], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker on {name} {args}: {proc.stderr}")
    return proc.stdout.strip()


def containers(name: str) -> dict[str, str]:
    """container name -> full container ID on a testbed host (running or not)."""
    out = host_docker(name, "ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}")
    return dict(line.split() for line in out.splitlines() if line.strip())


def api_image_id(name: str) -> str:
    cid = host_docker(name, "ps", "-q", "--filter", "label=com.docker.compose.service=api")
    return host_docker(name, "inspect", "--format", "{{.Image}}", cid)


def host_http(name: str, path: str, port: int = 3100) -> str:
    ns = "ghtbj1" if name == "j1" else name
    proc = subprocess.run(
        [
            "timeout",
            "10",
            "ip",
            "netns",
            "exec",
            ns,
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return proc.stdout


def busy(host_ns: str, seconds: int, port: int = 3101) -> None:
    """Give the host's worker a job for `seconds` (sample app endpoint), so draining it takes that long."""
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            host_ns,
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "--post-data=",
            f"http://127.0.0.1:{port}/worker/busy?seconds={seconds}",
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )


def reset_host(name: str) -> None:
    subprocess.run([str(TESTBED), "reset-host", name], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def sample_app(testbed_env: dict[str, str]) -> Path:
    return Path(testbed_env["GHTB_SAMPLE_APP"])


@pytest.fixture
def app_repo(sample_app: Path, tmp_path: Path) -> Path:
    """A fresh git clone of the sample app, so each test has its own commits."""
    dest = tmp_path / "app"
    subprocess.run(["git", "clone", "-q", str(sample_app), str(dest)], check=True)
    # busybox is not tracked in every layout of the sample app; copy what the clone lacks.
    for item in sample_app.iterdir():
        if item.name != ".git" and not (dest / item.name).exists():
            if item.is_dir():
                shutil.copytree(item, dest / item.name)
            else:
                shutil.copy2(item, dest / item.name)
    assert git(dest, "status", "--porcelain") == "", "the sample app clone must be clean"
    return dest


@pytest.fixture
def base_env(testbed_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("EC2_", "ECR_", "IMAGE_TAG", "GH_", "ASG_", "SSH_"))
    }
    env.update({k: v for k, v in testbed_env.items() if not k.startswith("GHTB_")})
    env["HOME"] = str(tmp_path / "home")  # no ~/.ssh/config or docker login of the test runner leaks in
    (tmp_path / "home").mkdir(exist_ok=True)
    env["NO_COLOR"] = "1"
    # Run the code of this checkout, whatever editable install the machine has.
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask 169.254.169.254 for credentials
    # The testbed's registry is a stand-in: ECR's token may go there only by the operator's choice,
    # made in the process environment (ghdeploy refuses it in an env file).
    env["ECR_REGISTRY_OVERRIDE"] = "1"
    env.pop("EC2_HOST", None)
    return env


@pytest.fixture
def hosts(testbed_env: dict[str, str]) -> list[str]:
    return testbed_env["GHTB_HOSTS_LIST"].split(",")


@pytest.fixture
def cli_factory(app_repo: Path, base_env: dict[str, str]) -> Callable[..., Cli]:
    def make(**env: str) -> Cli:
        return Cli(cwd=app_repo, env=dict(base_env, **env))

    return make


@pytest.fixture
def clean_hosts() -> Iterator[Callable[..., None]]:
    def clean(*names: str) -> None:
        for name in names:
            reset_host(name)

    yield clean
