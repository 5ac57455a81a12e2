"""The local Docker engine, through the docker CLI (subprocess, argv lists only)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ghdeploy.errors import LocalToolError, OperationFailed
from ghdeploy.progress import Reporter

_STEP_RE = re.compile(r"^(Step \d+/\d+ : .*|#\d+ \[.*\].*)$")
_DIGEST_RE = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def _docker_bin() -> str:
    path = shutil.which("docker")
    if path is None:
        raise LocalToolError("the docker CLI is not installed", "install Docker, then run again")
    return path


def ensure_engine() -> str:
    """Return the engine's version, or raise LocalToolError when no engine answers."""
    proc = subprocess.run(
        [_docker_bin(), "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = proc.stderr.strip().splitlines()[-1:] or ["no answer"]
        raise LocalToolError(
            f"no Docker engine is reachable ({detail[0]})",
            "start Docker (Docker Desktop or dockerd), or point DOCKER_HOST at a running engine",
        )
    return proc.stdout.strip()


def _inspect(ref: str, template: str) -> str | None:
    """`docker image inspect --format TEMPLATE` of a local image; None when there is no such image."""
    proc = subprocess.run(
        [_docker_bin(), "image", "inspect", "--format", template, ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(ref: str) -> str | None:
    return _inspect(ref, "{{.Id}}")


def image_platform(ref: str) -> str | None:
    """`os/architecture[/variant]` of a local image, as its config says."""
    found = _inspect(ref, "{{.Os}}/{{.Architecture}}/{{.Variant}}")
    return found.rstrip("/") if found is not None else None


def _stream(
    argv: list[str], on_line: Callable[[str], None], env: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    """Run argv, feed each output line to on_line, return (rc, last lines)."""
    tail: deque[str] = deque(maxlen=25)
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
    ) as proc:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = raw.rstrip()
                if line:
                    tail.append(line)
                    on_line(line)
        except BaseException:
            # Interrupted: don't leave a build or push running behind our back.
            proc.kill()
            raise
        rc = proc.wait()
    return rc, list(tail)


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    refs: list[str]
    build_args: dict[str, str]


def build(
    context: Path,
    refs: list[str],
    build_args: dict[str, str],
    reporter: Reporter,
    platform: str | None = None,
) -> BuildResult:
    argv = [_docker_bin(), "build"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for ref in refs:
        argv += ["--tag", ref]
    if platform:
        argv += ["--platform", platform]
    with tempfile.TemporaryDirectory(prefix="ghdeploy-") as tmp:
        iidfile = Path(tmp) / "iid"
        argv += ["--iidfile", str(iidfile), str(context)]
        reporter.debug("running: " + " ".join(argv))

        def on_line(line: str) -> None:
            if _STEP_RE.match(line):
                reporter.step(None, "build: " + line[:100])
            reporter.debug(line)

        rc, tail = _stream(argv, on_line)
        if rc != 0:
            raise OperationFailed(
                "docker build failed:\n  " + "\n  ".join(tail[-15:]),
                "fix the Dockerfile or build context, then run again",
            )
        iid = iidfile.read_text().strip() if iidfile.exists() else (image_id(refs[0]) or "")
    return BuildResult(image_id=iid, refs=refs, build_args=build_args)


LOGIN_PREFIX = "ghdeploy-docker-"


def registry_config(registry: str, username: str, password: str) -> str:
    """A docker config.json holding only the registry's credentials (`auths`), as `docker login` writes it."""
    import base64
    import json

    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": auth}}})


def remove_leftover_logins(tmp: Path | None = None) -> list[Path]:
    """Remove throw-away config dirs of runs that were killed (their process is gone); return them.

    Each dir names its process in a `pid` file; a dir of a live ghdeploy (another push) is kept.
    """
    removed: list[Path] = []
    base = tmp or Path(tempfile.gettempdir())
    for path in base.glob(LOGIN_PREFIX + "*"):
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            pid_text = (path / "pid").read_text().strip() if (path / "pid").exists() else ""
        except OSError:
            continue
        if pid_text.isdigit() and _alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def temporary_login(registry: str, username: str, password: str) -> Iterator[dict[str, str]]:
    """Credentials for `registry` in a throw-away docker config dir; yields the env to run docker with.

    The `auths` entry is written straight into a private config.json, not with `docker login`:
    on a Mac that stores the token in the Keychain (the desktop's credsStore), where it outlives
    the deleted directory. The directory is removed as soon as the caller is done, and a killed
    run's leftover is removed by the next run.
    """
    remove_leftover_logins()
    config_dir = Path(tempfile.mkdtemp(prefix=LOGIN_PREFIX))
    try:
        os.chmod(config_dir, 0o700)
        (config_dir / "pid").write_text(str(os.getpid()))
        fd = os.open(config_dir / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(registry_config(registry, username, password))
        yield dict(os.environ, DOCKER_CONFIG=str(config_dir))
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


def push(ref: str, env: dict[str, str], reporter: Reporter) -> str:
    """Push one ref; return the digest the registry reported."""
    argv = [_docker_bin(), "push", ref]
    reporter.debug("running: " + " ".join(argv))
    layers: set[str] = set()
    done: set[str] = set()

    def on_line(line: str) -> None:
        head, _, status = line.partition(": ")
        if re.fullmatch(r"[0-9a-f]{12}", head):
            layers.add(head)
            if status.startswith(("Pushed", "Layer already exists", "Mounted")):
                done.add(head)
            reporter.step(None, f"push {ref}: {len(done)}/{len(layers)} layers")
        reporter.debug(line)

    rc, tail = _stream(argv, on_line, env=env)
    if rc != 0:
        raise OperationFailed(f"docker push {ref} failed:\n  " + "\n  ".join(tail[-10:]))
    for line in reversed(tail):
        match = _DIGEST_RE.search(line)
        if match:
            return match.group(1)
    raise OperationFailed(f"docker push {ref} reported no digest:\n  " + "\n  ".join(tail[-5:]))
