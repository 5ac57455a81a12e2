"""Every command ghdeploy runs on a host, built as data.

Pure functions return argv lists; the SSH runner joins them with shlex.join, so no value ever
reaches the remote shell unquoted. Where a few steps must run together, a constant `sh -c`
script takes every value as a positional parameter ("$1", "$2", ...), never by interpolation.
Secrets (the registry token, a worker's environment) travel on stdin, never in argv.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

Argv = list[str]

STATE_DIRNAME = ".ghdeploy"
TARGETED_LABEL = "gh.role=targeted-worker"

# Exit codes of the preflight script, and what each means for the operator.
PREFLIGHT_CODES = {
    10: "docker is not installed",
    11: "docker compose v2 is not installed (`docker compose version` failed)",
    12: "the docker engine is not running or not reachable by this user",
    13: "the app directory does not exist",
    14: "the compose file does not exist",
}
LOCK_HELD_CODE = 75


@dataclass(frozen=True)
class RemoteLayout:
    """Where things live on a host."""

    app_dir: str  # GHOSTHANDS_DIR
    compose_file: str  # absolute path of docker-compose.{prod,staging}.yml

    @property
    def state_dir(self) -> str:
        return f"{self.app_dir.rstrip('/')}/{STATE_DIRNAME}"

    @property
    def history_file(self) -> str:
        return f"{self.state_dir}/history.jsonl"

    @property
    def pending_file(self) -> str:
        return f"{self.state_dir}/pending.json"

    @property
    def lock_dir(self) -> str:
        return f"{self.state_dir}/lock"


def render(argv: Argv) -> str:
    return shlex.join(argv)


def preflight(layout: RemoteLayout) -> Argv:
    script = (
        "command -v docker >/dev/null 2>&1 || exit 10; "
        "docker compose version --short >/dev/null 2>&1 || exit 11; "
        "docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || exit 12; "
        'test -d "$1" || exit 13; '
        'test -f "$2" || exit 14; '
        "docker compose version --short"
    )
    return ["sh", "-c", script, "sh", layout.app_dir, layout.compose_file]


def compose(layout: RemoteLayout, image: str | None, *args: str) -> Argv:
    """`docker compose -f FILE ARGS` with ECR_IMAGE set (the compose file interpolates it).

    Read-only commands pass image=None; ECR_IMAGE then gets a placeholder so compose does not
    warn about an unset variable.
    """
    return ["env", f"ECR_IMAGE={image or 'unset'}", "docker", "compose", "-f", layout.compose_file, *args]


def compose_pull(layout: RemoteLayout, image: str, docker_config: str) -> Argv:
    # DOCKER_CONFIG points at the throw-away login made by registry_login().
    return ["env", f"DOCKER_CONFIG={docker_config}", *compose(layout, image, "pull", "--quiet")]


def compose_stop(layout: RemoteLayout, image: str, service: str, timeout: int) -> Argv:
    return compose(layout, image, "stop", "-t", str(timeout), service)


def compose_rm(layout: RemoteLayout, image: str, service: str) -> Argv:
    """Stop and remove one service's container, so the next `up` starts it fresh."""
    return compose(layout, image, "rm", "--force", "--stop", service)


def compose_up(layout: RemoteLayout, image: str, docker_config: str | None = None) -> Argv:
    argv = compose(layout, image, "up", "-d", "--remove-orphans")
    if docker_config:
        argv = ["env", f"DOCKER_CONFIG={docker_config}", *argv]
    return argv


def inspect_app_containers(layout: RemoteLayout) -> Argv:
    """`docker inspect` of the app's compose containers and of every targeted worker, in one go.

    Compose labels each container with its project's working directory (the app directory), so
    the app's containers are found with plain `docker ps`: no compose process to start, which
    costs ~100 ms of CPU on the host at every status and deploy.
    """
    script = (
        'ids=$(docker ps --all --quiet --no-trunc --filter "label=com.docker.compose.project.working_dir=$1" '
        '&& docker ps --all --quiet --no-trunc --filter "label=$2") || exit 1; '
        'if [ -z "$ids" ]; then echo "[]"; else docker inspect --type container $ids; fi'
    )
    return ["sh", "-c", script, "sh", layout.app_dir, TARGETED_LABEL]


def image_inspect(refs: list[str]) -> Argv:
    return ["docker", "image", "inspect", *refs]


def registry_login(registry: str, username: str, docker_config: str) -> Argv:
    """`docker login` into a private, throw-away config dir; the password is read from stdin."""
    script = 'umask 077 && mkdir -p "$1" && DOCKER_CONFIG="$1" docker login --username "$2" --password-stdin "$3"'
    return ["sh", "-c", script, "sh", docker_config, username, registry]


def remove_dir(path: str) -> Argv:
    return ["rm", "-rf", "--", path]


def append_file(directory: str, path: str) -> Argv:
    """Append stdin to a file, creating its private directory first."""
    return ["sh", "-c", 'umask 077 && mkdir -p "$1" && cat >> "$2"', "sh", directory, path]


def write_file(directory: str, path: str) -> Argv:
    """Replace a file with stdin atomically (write then rename)."""
    script = 'umask 077 && mkdir -p "$1" && cat > "$2.tmp" && mv -f "$2.tmp" "$2"'
    return ["sh", "-c", script, "sh", directory, path]


def read_file(path: str) -> Argv:
    return ["sh", "-c", 'test -f "$1" && cat "$1" || true', "sh", path]


def tail_file(path: str, lines: int) -> Argv:
    return ["sh", "-c", 'test -f "$1" && tail -n "$2" "$1" || true', "sh", path, str(lines)]


def remove_file(path: str) -> Argv:
    return ["rm", "-f", "--", path]


def acquire_lock(layout: RemoteLayout) -> Argv:
    """mkdir is atomic: exactly one of two concurrent deploys creates the lock directory.

    The record (who, where, when, tag) arrives on stdin and is saved BEFORE the mkdir, then
    renamed into the lock directory: a lock is never visible for longer than that rename without
    its holder's record (reading stdin after the mkdir left a loser, or `lock status`, with an
    empty record while the winner's stdin was still on the wire). A loser waits up to 2 s for
    the record to appear, then prints it on stdout and exits LOCK_HELD_CODE.
    """
    script = (
        'umask 077 && mkdir -p "$1" || exit 1; t="$1/lock-info.$$"; '
        'cat > "$t" || { rm -f "$t"; exit 1; }; '
        'if mkdir "$2" 2>/dev/null; then mv -f "$t" "$2/info.json" && exit 0; rm -rf "$2" "$t"; exit 1; fi; '
        'rm -f "$t"; i=0; '
        'while [ -d "$2" ] && [ ! -f "$2/info.json" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; '
        'cat "$2/info.json" 2>/dev/null; exit 75'
    )
    return ["sh", "-c", script, "sh", layout.state_dir, layout.lock_dir]


def release_lock(layout: RemoteLayout, lock_id: str | None = None) -> Argv:
    """Remove the lock; with `lock_id`, only while it is still that lock (its record holds the id).

    A deploy whose lock an operator freed with `lock release` must not, when it ends, free the
    lock another deploy has taken since: that one then exits LOCK_HELD_CODE and leaves it.
    """
    if lock_id is None:
        return ["rm", "-rf", "--", layout.lock_dir]
    script = 'test -d "$1" || exit 0; grep -qF "$2" "$1/info.json" 2>/dev/null || exit 75; rm -rf -- "$1"'
    return ["sh", "-c", script, "sh", layout.lock_dir, lock_id]


def read_lock(layout: RemoteLayout) -> Argv:
    return ["sh", "-c", 'test -d "$1" || exit 0; cat "$1/info.json" 2>/dev/null || echo "{}"', "sh", layout.lock_dir]


def stop_container(name: str, timeout: int) -> Argv:
    return ["docker", "stop", "-t", str(timeout), name]


def run_container(layout: RemoteLayout, spec: ContainerSpec, image: str) -> Argv:
    """Replace a standalone container with one on `image`, keeping name, labels, network, ports,
    restart policy, memory limit, command and environment.

    The environment arrives on stdin and is written to a private env-file under the state
    directory (it may hold secrets that must never appear in a process list), used by
    `docker run --env-file`, then deleted.
    """
    env_file = f"{layout.state_dir}/env-{spec.name}"
    run = ["docker", "run", "--detach", "--name", spec.name]
    for key, value in sorted(spec.labels.items()):
        run += ["--label", f"{key}={value}"]
    if spec.network:
        run += ["--network", spec.network]
    for binding in spec.ports:
        run += ["--publish", binding]
    if spec.restart:
        run += ["--restart", spec.restart]
    if spec.memory:
        run += ["--memory", str(spec.memory)]
    if spec.entrypoint is not None:
        run += ["--entrypoint", spec.entrypoint[0] if spec.entrypoint else ""]
    run += ["--env-file", env_file, image]
    if spec.entrypoint:
        run += spec.entrypoint[1:]
    if spec.cmd is not None:
        run += spec.cmd
    script = (
        'umask 077 && mkdir -p "$1" && cat > "$2" || exit 1; f="$2"; name="$3"; shift 3; '
        'docker rm -f "$name" >/dev/null 2>&1; "$@"; rc=$?; rm -f "$f"; exit $rc'
    )
    return ["sh", "-c", script, "sh", layout.state_dir, env_file, spec.name, *run]


@dataclass(frozen=True)
class ContainerSpec:
    """What is needed to recreate a targeted worker: everything but its image and its secrets."""

    name: str
    labels: dict[str, str]
    env: list[str]
    network: str | None
    ports: list[str]
    restart: str | None
    memory: int | None
    entrypoint: list[str] | None
    cmd: list[str] | None


# --- logs (day-2 tools) ----------------------------------------------------------------------

# One row per container: ID, name, compose working dir, compose service, one-off flag, gh.role, state.
LOG_CONTAINER_FORMAT = (
    '{{.ID}}\t{{.Names}}\t{{.Label "com.docker.compose.project.working_dir"}}\t'
    '{{.Label "com.docker.compose.service"}}\t{{.Label "com.docker.compose.oneoff"}}\t'
    '{{.Label "gh.role"}}\t{{.State}}'
)


def log_containers() -> Argv:
    """Every container on the host, one tab-separated row each (logmerge.select_sources picks).

    One `docker ps` instead of one per label filter (filters on different labels are ANDed).
    """
    return ["docker", "ps", "--all", "--no-trunc", "--format", LOG_CONTAINER_FORMAT]


def container_logs(container_id: str, *, since: str | None, tail: int | None, follow: bool) -> Argv:
    """`docker logs --timestamps` of one container, its stderr and stdout on one stream.

    The docker CLI writes the container's two streams in their original order; sending both to
    the same pipe keeps that order, so each container is one time-ordered source.
    """
    args = ["--timestamps"]
    if since:
        args += ["--since", since]
    if tail is not None:
        args += ["--tail", str(tail)]
    if follow:
        args.append("--follow")
    return ["sh", "-c", 'exec docker logs "$@" 2>&1', "sh", *args, "--", container_id]
