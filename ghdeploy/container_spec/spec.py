"""The spec itself and its environment: which entries a docker env-file carries exactly, which
need the docker CLI's own environment, and the `sh` text that hands them over without any argv."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

# A name `sh` can export (values that need the process environment must have one).
SHELL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names the docker CLI itself reads from its environment: a multi-line value with such a name
# cannot be handed to `docker create -e NAME` without changing what the CLI does.
CLI_NAMES = {
    *("PATH", "HOME", "TMPDIR", "SHELL", "IFS", "ENV", "PWD", "OLDPWD", "PS1", "PS2", "PS4", "OPTIND"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"),
    *("GODEBUG", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GOTRACEBACK", "SSL_CERT_FILE", "SSL_CERT_DIR"),
}
CLI_PREFIXES = ("DOCKER_", "LD_", "XDG_")


@dataclass(frozen=True)
class ContainerSpec:
    """How to create a container like this one on another image.

    `options`: `docker create` options from the container's own settings (HostConfig, labels,
    user, ...), none of them secret. `env`: KEY=VALUE entries the container set itself, not
    inherited from its image. `networks`: `docker network connect` options for each network
    beyond the first. `problems`: what cannot be carried over exactly.
    """

    name: str
    options: list[str]
    env: list[str]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    networks: list[list[str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def env_file_entries(self) -> list[str]:
        """Entries a docker env-file carries exactly (one line each)."""
        return [e for e in self.env if env_file_safe(e)]

    @property
    def process_env_entries(self) -> list[str]:
        """Entries that need `-e NAME` with the value in the docker CLI's environment (multi-line)."""
        return [e for e in self.env if not env_file_safe(e)]

    def command(self) -> list[str]:
        """What follows the image in `docker create`: entrypoint arguments, then the command."""
        args: list[str] = []
        if self.entrypoint:
            args += self.entrypoint[1:]
        if self.cmd is not None:
            args += self.cmd
        return args


def env_file_safe(entry: str) -> bool:
    # docker's env-file parser: one entry a line, leading blanks and a trailing \r dropped,
    # `#` starts a comment, a name without `=` is looked up in the CLI's environment.
    key, eq, value = entry.partition("=")
    return (
        bool(eq)
        and bool(key)
        and not key.startswith("#")
        and not any(c.isspace() for c in key)
        and "\n" not in value
        and "\r" not in value
    )


def own_env(container: dict[str, Any], image: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The container's own environment (entries repeating its image's ENV are the image's), and problems."""
    image_env = set((image.get("Config") or {}).get("Env") or [])
    env = [e for e in ((container.get("Config") or {}).get("Env") or []) if e not in image_env]
    problems = []
    for entry in env:
        key, eq, _ = entry.partition("=")
        if env_file_safe(entry):
            continue
        if not eq:
            problems.append(f"Config.Env entry {key!r} has no value")
        elif not SHELL_NAME_RE.match(key):
            problems.append(f"Config.Env {key}: a multi-line value needs a shell variable name")
        elif key in CLI_NAMES or key.startswith(CLI_PREFIXES):
            problems.append(f"Config.Env {key}: a multi-line value under a name the docker CLI itself reads")
    return env, problems


def env_script(spec: ContainerSpec, env_file: str, delimiter: str) -> str:
    """The `sh` text (sent on stdin, run with eval) that writes the env-file and exports the rest.

    Single-line entries go to a private env-file through a quoted here-document; multi-line
    values (a PEM key, JSON) are exported for `docker create -e NAME`, which takes the value from
    the CLI's own environment. Neither puts a value in any argv.
    """
    lines = spec.env_file_entries
    if any(line == delimiter for line in lines):
        raise ValueError("here-document delimiter collides with an environment entry")
    text = f"cat > {shlex.quote(env_file)} <<'{delimiter}' || exit 1\n"
    text += "".join(f"{line}\n" for line in lines)
    text += f"{delimiter}\n"
    for entry in spec.process_env_entries:
        key, _, value = entry.partition("=")
        text += f"{key}={shlex.quote(value)}; export {key}\n"
    return text


def env_names(spec: ContainerSpec) -> list[str]:
    """The names passed as `-e NAME` (values in the CLI's environment)."""
    return [e.partition("=")[0] for e in spec.process_env_entries]
