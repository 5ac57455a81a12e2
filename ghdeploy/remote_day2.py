"""The commands the day-2 tools run on a host (logs, disk and platform checks, prune), built as data.

The rules of remote_commands.py hold here too: argv lists joined with shlex.join on the host, and
a constant `sh -c` script takes every value as a positional parameter, never by interpolation.
"""

from __future__ import annotations

from ghdeploy import docker_api
from ghdeploy.remote_commands import Argv, RemoteLayout

# --- logs ----------------------------------------------------------------------------------------

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


# --- disk and platform, prune -------------------------------------------------------------------


def disk_of(docker_root: str) -> Argv:
    """`df -Pk` of a data root already known (a container's files showed it): no docker at all,
    and no shell either (status_reads printed the architecture)."""
    return ["df", "-Pk", docker_root]


def host_facts() -> Argv:
    """The engine's data root, architecture and OS, then `df -Pk` of that root (hostfit.parse_facts).

    For a host where no container of ours shows the data root (see disk_of): `docker info` is
    slow (the CLI starts every CLI plugin, 60-200 ms) but the only one that knows it then.
    """
    script = (
        "facts=$(docker info --format '{{.DockerRootDir}}|{{.Architecture}}|{{.OSType}}') || exit 12; "
        'echo "$facts"; df -Pk "${facts%%|*}" | tail -n 1'
    )
    return ["sh", "-c", script]


PRUNE_MARKER = "--- containers ---"


def image_inventory() -> Argv:
    """Every image (docker image inspect JSON), a marker line, then the image ID of every container
    (running or stopped): what prune.plan needs to decide, in one call."""
    script = (
        "ids=$(docker image ls --all --quiet --no-trunc | sort -u) || exit 1; "
        'if [ -n "$ids" ]; then docker image inspect $ids || exit 1; else echo "[]"; fi; '
        'echo "$1"; '
        "cids=$(docker ps --all --quiet --no-trunc) || exit 1; "
        'if [ -n "$cids" ]; then docker inspect --type container --format "{{.Image}}" $cids || exit 1; fi'
    )
    return ["sh", "-c", script, "sh", PRUNE_MARKER]


def remove_images(refs: list[str]) -> Argv:
    """`docker rmi` without --force: the engine itself refuses an image a container uses."""
    return ["docker", "rmi", *refs]


# --- status: the host's own records in one command ------------------------------------------------

# Starts each section of status_reads' output on a line of its own: the record files are JSON,
# and JSON text never holds a raw control character such as this one.
SECTION_MARK = "\x1eghdeploy-section "
STATUS_SECTIONS = ("docker", "arch", "history", "pending", "lock", "agent")


def status_reads(layout: RemoteLayout, agent_file: str) -> Argv:
    """What `status` reads besides containers, endpoints and disk, in one command (one session
    and one shell per host, not five: on many hosts at once that is most of the hosts' work):
    how the host's docker CLI reaches its engine (docker_api.probe_argv), the architecture
    (`uname -m`), the last history record, pending.json, the lock's record (as rc.read_lock
    prints it) and the agent's heartbeat file. Each section follows a SECTION_MARK line naming
    it (split_sections). A file that is not there costs no process (`test` is a builtin)."""
    script = (
        'm=$1; shift; s() { printf "\\n%s%s\\n" "$m" "$1"; }; '
        f"s docker; {docker_api.probe_argv()[2]}; "
        "s arch; uname -m; "
        's history; test -f "$1" && tail -n 1 "$1"; '
        's pending; test -f "$2" && cat "$2"; '
        's lock; if test -d "$3"; then cat "$3/info.json" 2>/dev/null || echo "{}"; fi; '
        's agent; test -f "$4" && cat "$4"; true'
    )
    files = [layout.history_file, layout.pending_file, layout.lock_dir, agent_file]
    return ["sh", "-c", script, "sh", SECTION_MARK, *files]


def split_sections(text: str) -> dict[str, str]:
    """status_reads' output, section by section, each as printed (a missing one reads as empty).

    Not stripped: the docker section's lines count by position (DOCKER_HOST may be empty)."""
    sections = dict.fromkeys(STATUS_SECTIONS, "")
    name: str | None = None
    lines: list[str] = []
    for line in [*text.split("\n"), SECTION_MARK]:
        if line.startswith(SECTION_MARK):
            if name in sections:
                sections[name] = "\n".join(lines)
            name, lines = line[len(SECTION_MARK) :].strip(), []
        else:
            lines.append(line)
    return sections
