"""Every command ghdeploy runs on a host, built as data.

Pure functions return argv lists; the SSH runner joins them with shlex.join, so no value ever
reaches the remote shell unquoted. Where a few steps must run together, a constant `sh -c`
script takes every value as a positional parameter ("$1", "$2", ...), never by interpolation.
Secrets (the registry token, a worker's environment) travel on stdin, never in argv.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ghdeploy.container_spec import ContainerSpec

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
# A lock record's "since" as sent; acquire_lock replaces it with the host's clock (not the laptop's).
HOST_NOW = "@host-now@"


class _InStateDir:
    """A path in the host's state directory (GHOSTHANDS_DIR/.ghdeploy), read as a RemoteLayout attribute."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, layout: RemoteLayout, owner: type | None = None) -> str:
        return f"{layout.state_dir}/{self.name}"


@dataclass(frozen=True)
class RemoteLayout:
    """Where things live on a host."""

    app_dir: str  # GHOSTHANDS_DIR
    compose_file: str  # absolute path of docker-compose.{prod,staging}.yml
    # ECR_REGISTRY/ECR_REPOSITORY: targeted workers of another repository on the same host are not ours.
    image_repo: str | None = None

    history_file = _InStateDir("history.jsonl")
    pending_file = _InStateDir("pending.json")
    lock_dir = _InStateDir("lock")

    @property
    def state_dir(self) -> str:
        return f"{self.app_dir.rstrip('/')}/{STATE_DIRNAME}"


def render(argv: Argv) -> str:
    return shlex.join(argv)


def preflight(layout: RemoteLayout) -> Argv:
    script = (
        "command -v docker >/dev/null 2>&1 || exit 10; "
        "docker compose version --short >/dev/null 2>&1 || exit 11; "
        "facts=$(docker info --format '{{.DockerRootDir}}|{{.Architecture}}|{{.OSType}}' 2>/dev/null) || exit 12; "
        'test -d "$1" || exit 13; '
        'test -f "$2" || exit 14; '
        # then the engine's data root, architecture and OS, and `df` of that root (hostfit.parse_facts)
        'docker compose version --short; echo "$facts"; df -Pk "${facts%%|*}" 2>/dev/null | tail -n 1; exit 0'
    )
    return ["sh", "-c", script, "sh", layout.app_dir, layout.compose_file]


def compose(layout: RemoteLayout, image: str | None, *args: str) -> Argv:
    """`docker compose -f FILE ARGS` with ECR_IMAGE set (the compose file interpolates it).

    Read-only commands pass image=None; ECR_IMAGE then gets a placeholder so compose does not
    warn about an unset variable.
    """
    return ["env", f"ECR_IMAGE={image or 'unset'}", "docker", "compose", "-f", layout.compose_file, *args]


# --- compose: only the services that run the app's image (faults) --------------------------------

# What ECR_IMAGE is set to while asking compose which services use it: no real image has this name.
IMAGE_PROBE = "ghdeploy-probe.invalid/ecr-image:probe"


def compose_services(layout: RemoteLayout) -> Argv:
    """The compose file as JSON with ECR_IMAGE set to IMAGE_PROBE: which services exist, which use it."""
    return compose(layout, IMAGE_PROBE, "config", "--format", "json")


def list_all_containers() -> Argv:
    """Every container on the host, one per line: name, image, compose service, compose project dir."""
    fmt = (
        '{{.Names}}\t{{.Image}}\t{{.Label "com.docker.compose.service"}}\t'
        '{{.Label "com.docker.compose.project.working_dir"}}'
    )
    return ["docker", "ps", "--all", "--no-trunc", "--format", fmt]


def compose_pull(layout: RemoteLayout, image: str, docker_config: str, services: list[str]) -> Argv:
    """Pull the new image for the app's services only: redis & co. are not the deploy's business."""
    # DOCKER_CONFIG points at the throw-away credentials written by write_registry_auth().
    return ["env", f"DOCKER_CONFIG={docker_config}", *compose(layout, image, "pull", "--quiet", "--", *services)]


def compose_stop_rm(layout: RemoteLayout, image: str, service: str, timeout: int) -> Argv:
    """Stop one service's container with STOP_TIMEOUT, then remove it so the next `up` starts it fresh.

    (`compose rm --stop` has no timeout: it used docker's default 10 s, not STOP_TIMEOUT.)
    """
    script = 't=$1; s=$2; shift 2; "$@" stop -t "$t" -- "$s" && "$@" rm --force -- "$s"'
    return ["sh", "-c", script, "sh", str(timeout), service, *compose(layout, image)]


def compose_up(layout: RemoteLayout, image: str, services: list[str] | None = None) -> Argv:
    """`up -d` of the app's services only (--no-deps: other services are left as they run).

    Without `services` (a first deploy on an empty host) the whole file is brought up.
    """
    if services is None:
        return compose(layout, image, "up", "-d", "--remove-orphans")
    return compose(layout, image, "up", "-d", "--no-deps", "--remove-orphans", "--", *services)


def inspect_app_containers(layout: RemoteLayout) -> Argv:
    """`docker inspect` of the app's compose containers and of every targeted worker, in one go.

    Compose labels each container with its project's working directory (the app directory), so
    the app's containers are found with plain `docker ps`: no compose process to start, which
    costs ~100 ms of CPU on the host at every status and deploy. One `docker ps` lists every
    container with both labels and awk keeps ours (a second `docker ps` costs 20-40 ms); the
    app directory and the label reach awk through its environment, never through its program.
    """
    role_key, _, role = TARGETED_LABEL.partition("=")
    columns = "\t".join(
        ["{{.ID}}", '{{.Label "com.docker.compose.project.working_dir"}}', f'{{{{.Label "{role_key}"}}}}']
    )
    script = (
        'rows=$(docker ps --all --no-trunc --format "$3") || exit 1; '
        'ids=$(printf \'%s\\n\' "$rows" | D="$1" R="$2" awk -F \'\\t\' '
        '\'$1 != "" && ($2 == ENVIRON["D"] || $3 == ENVIRON["R"]) { print $1 }\'); '
        'if [ -z "$ids" ]; then echo "[]"; else docker inspect --type container $ids; fi'
    )
    return ["sh", "-c", script, "sh", layout.app_dir, role, columns]


def image_inspect(refs: list[str]) -> Argv:
    return ["docker", "image", "inspect", *refs]


# --- registry credentials (faults) ------------------------------------------------------------

DOCKER_CONFIG_PREFIX = "docker-config-"


def docker_config_dir(state_dir: str, token: str) -> str:
    return f"{state_dir}/{DOCKER_CONFIG_PREFIX}{token}"


def write_registry_auth(state_dir: str, docker_config: str) -> Argv:
    """Write a private DOCKER_CONFIG whose config.json (from stdin) holds the registry's `auths` entry.

    Not `docker login`: that hands the token to whatever credential store the host's docker is set
    up with (the Keychain on a Mac), where it outlives the deleted directory. Dirs left by a killed
    run (they hold a token) are removed first; the host's deploy lock is held, so none is in use.
    """
    script = (
        'umask 077 || exit 1; for d in "$1"/' + DOCKER_CONFIG_PREFIX + '*; do [ -e "$d" ] && rm -rf -- "$d"; done; '
        'mkdir -p "$2" && cat > "$2/config.json"'
    )
    return ["sh", "-c", script, "sh", state_dir, docker_config]


def remove_dir(path: str) -> Argv:
    return ["rm", "-rf", "--", path]


def append_file(directory: str, path: str, then_remove: str | None = None) -> Argv:
    """Append stdin to a file, creating its private directory first; with `then_remove`, remove
    that file once the append succeeded (a deploy's record written and its pending.json ended in
    one round trip; a failed append leaves pending.json, as two commands would).

    A last line left without its newline (a write cut short: disk full, a killed run) is ended
    first, so the new record starts on a line of its own instead of being glued to the broken one.
    """
    script = (
        'umask 077 && mkdir -p "$1" || exit 1; '
        'if [ -s "$2" ] && [ -n "$(tail -c 1 "$2")" ]; then echo >> "$2" || exit 1; fi; cat >> "$2"'
    )
    if then_remove is None:
        return ["sh", "-c", script, "sh", directory, path]
    return ["sh", "-c", script + ' || exit 1; rm -f -- "$3"', "sh", directory, path, then_remove]


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

    The record (who, where, tag) arrives on stdin and is saved BEFORE the mkdir, with its
    "since" (sent as HOST_NOW) set from the host's clock, then
    renamed into the lock directory: a lock is never visible for longer than that rename without
    its holder's record (reading stdin after the mkdir left a loser, or `lock status`, with an
    empty record while the winner's stdin was still on the wire). A loser waits up to 2 s for
    the record to appear, then prints it on stdout and exits LOCK_HELD_CODE.
    """
    script = (
        'umask 077 && mkdir -p "$1" || exit 1; t="$1/lock-info.$$"; now=$(date -u +%Y-%m-%dT%H:%M:%SZ); '
        r'sed "s/\"since\": \"' + HOST_NOW + r'\"/\"since\": \"$now\"/" > "$t" || { rm -f "$t"; exit 1; }; '
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


# --- targeted workers: replaced without ever destroying the old one first (faults) -------------
#
# create_container renames the old container to NAME.ghdeploy-backup and creates the new one
# under NAME; the laptop then connects extra networks, starts it, checks it, and only then runs
# drop_backup. Any failure before that runs restore_container: the new one is removed and the
# backup renamed back (and started again if it ran). Container names allow [a-zA-Z0-9_.-], so
# the suffix cannot collide with a worker's own name.

BACKUP_SUFFIX = ".ghdeploy-backup"


def backup_name(name: str) -> str:
    return f"{name}{BACKUP_SUFFIX}"


def env_file_path(layout: RemoteLayout, name: str) -> str:
    return f"{layout.state_dir}/env-{name}"


def create_container(layout: RemoteLayout, spec: ContainerSpec, image: str, restart_old: bool) -> Argv:
    """Rename the (stopped) container to its backup name and create its replacement on `image`.

    stdin: container_spec.env_script() (the env-file as a quoted here-document, multi-line values
    exported); it runs in a subshell with eval, so no value reaches any argv. The env-file is
    private (umask 077) and deleted right after `docker create`. If the create fails the backup
    gets its name back (and is started again when `restart_old`); exit 3 then, 4 if even that
    failed. A backup left by a killed run is removed first: the container under NAME carries the
    same configuration.
    """
    from ghdeploy.container_spec import env_names

    env_file = env_file_path(layout, spec.name)
    create = ["docker", "create", "--name", spec.name, *spec.options, f"--env-file={env_file}"]
    for key in env_names(spec):
        create += ["-e", key]
    create += ["--", image, *spec.command()]
    script = (
        "umask 077 || exit 1; state=$1 name=$2 backup=$3 envfile=$4 start=$5; shift 5; "
        'mkdir -p "$state" || exit 1; envscript=$(cat) || exit 1; '
        'if docker container inspect "$backup" >/dev/null 2>&1; then docker rm -f "$backup" >/dev/null || exit 1; fi; '
        'docker rename "$name" "$backup" || exit 1; '
        '( eval "$envscript" && exec "$@" ); rc=$?; rm -f "$envfile"; '
        "[ $rc -eq 0 ] && exit 0; "
        'docker rm -f "$name" >/dev/null 2>&1; docker rename "$backup" "$name" || exit 4; '
        'if [ "$start" = 1 ]; then docker start "$name" >/dev/null || exit 4; fi; exit 3'
    )
    return [
        "sh",
        "-c",
        script,
        "sh",
        layout.state_dir,
        spec.name,
        backup_name(spec.name),
        env_file,
        "1" if restart_old else "0",
        *create,
    ]


def connect_network(name: str, options: list[str]) -> Argv:
    """`docker network connect [--alias A] [--ip IP] NETWORK NAME` (options end with the network)."""
    return ["docker", "network", "connect", *options[:-1], "--", options[-1], name]


def start_container(name: str) -> Argv:
    return ["docker", "start", "--", name]


def restore_container(name: str, start: bool) -> Argv:
    """Put the backup back under its name (removing the replacement); start it if it ran. No backup: no-op."""
    script = (
        'name=$1 backup=$2 start=$3; docker container inspect "$backup" >/dev/null 2>&1 || exit 0; '
        'docker rm -f "$name" >/dev/null 2>&1; docker rename "$backup" "$name" || exit 1; '
        'if [ "$start" = 1 ]; then docker start "$name" >/dev/null || exit 1; fi; exit 0'
    )
    return ["sh", "-c", script, "sh", name, backup_name(name), "1" if start else "0"]


def drop_backup(name: str) -> Argv:
    """Remove the backup once its replacement is checked. No -v: its volumes now serve the new container."""
    script = 'docker container inspect "$1" >/dev/null 2>&1 || exit 0; docker rm -f "$1" >/dev/null'
    return ["sh", "-c", script, "sh", backup_name(name)]


def restore_all_backups() -> Argv:
    """Put back every NAME.ghdeploy-backup on the host, started when its replacement was running.

    For whatever finishes a run that cannot (the laptop gone mid-switch): a self-contained script
    with no value from us at all, so it can run detached on the host.
    """
    script = (
        'docker ps --all --format "{{.Names}}" | while read -r b; do case "$b" in *' + BACKUP_SUFFIX + ") "
        "n=${b%" + BACKUP_SUFFIX + '}; r=$(docker inspect --format "{{.State.Running}}" "$n" 2>/dev/null); '
        'docker rm -f "$n" >/dev/null 2>&1; docker rename "$b" "$n" || continue; '
        'if [ "$r" = true ]; then docker start "$n" >/dev/null; fi;; esac; done; exit 0'
    )
    return ["sh", "-c", script]


def inspect_containers(names: list[str]) -> Argv:
    return ["docker", "container", "inspect", "--", *names]
