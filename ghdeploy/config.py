"""Configuration: one declared schema, resolved from flags, the environment and `.env.deploy`.

HOW TO ADD A KEY (one place; tests then insist on the rest):
  1. Declare it in the body of `Config` below, with the parser (ghdeploy/grammar.py) of its grammar/range:
         agent_interval = setting("AGENT_INTERVAL", seconds(1, 3600), "30", "seconds between checks", ("agent",))
     `setting` has a default (its type is the parser's), `optional` may be unset (type `T | None`),
     `required` must be set for the listed commands. Pass `secret=True` for tokens and passwords:
     their values are never printed, not even in an error.
  2. Add its name to `KeyName` (so `config.text("AGENT_INTERVAL")` type-checks), document it in
     `.env.deploy.example` and in README's configuration table (same default, same commands).
     tests/unit/test_config_schema.py fails until all three agree.
  3. Read it as a typed attribute: `config.agent_interval` (mypy rejects a misspelt one). A command
     loads with `load_config(command="agent")`, which validates exactly the keys that name "agent".

Precedence: command-line flag > process environment > env file > default. The file is read with
python-dotenv's `dotenv_values`, which never touches `os.environ`. Validation reports every problem
at once (exit 2) before anything runs, and imports nothing from the network stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ghdeploy.config_keys import Key, optional, required, setting
from ghdeploy.errors import ConfigError
from ghdeploy.grammar import (
    AGENT_MIN_INTERVAL,
    ASG_RE,
    COMPOSE_FILES,
    MIN_SECRET,
    REGION_RE,
    REPOSITORY_RE,
    TABLE_RE,
    TAG_RE,
    USER_RE,
    choice,
    database_url,
    docker_tag,
    file_if_explicit,
    host_list,
    http_url,
    integer,
    local_path,
    not_a_directory,
    pattern,
    platforms,
    port,
    readable_file,
    registry_host,
    remote_dir,
    seconds,
    shared_secret,
)
from ghdeploy.hosts import Host

# Names other modules import from here.
__all__ = ["COMPOSE_FILES", "MIN_SECRET", "TAG_RE", "Config", "Host", "Key", "KeyName", "load_config", "pattern"]

DEFAULT_ENV_FILE = ".env.deploy"

# --- the schema ---------------------------------------------------------------------------------


BUILD, PUSH, DEPLOY, ROLLBACK, ROLLBACK_TO, HOSTS = "build", "push", "deploy", "rollback", "rollback --to", "hosts"
READ_ONLY = ("status", "verify", "history", "lock", "logs")
PRUNE = "prune"
AGENT, SERVE, NOTIFY = "agent", "serve", "notify"  # the agent runs on the host: no EC2_HOST/EC2_KEY/SSH keys
NOTIFY_WAIT = "notify --wait"
_REGISTRY_USERS = (BUILD, PUSH, DEPLOY, ROLLBACK_TO, AGENT, SERVE, NOTIFY)
_AWS_USERS = (PUSH, DEPLOY, ROLLBACK_TO, AGENT, SERVE)
_SSH_USERS = (DEPLOY, ROLLBACK, ROLLBACK_TO, SERVE, *READ_ONLY)
_HOST_USERS = (*_SSH_USERS, AGENT)  # what runs on a host: its directory, compose file, ports
_OPERATION_USERS = (DEPLOY, ROLLBACK, ROLLBACK_TO, SERVE, AGENT)


KeyName = Literal[
    "ECR_REGISTRY",
    "ECR_REGISTRY_OVERRIDE",
    "ECR_REPOSITORY",
    "AWS_REGION",
    "EC2_HOST",
    "ASG_NAME",
    "SSH_ADDRESS",
    "SSH_USER",
    "EC2_KEY",
    "SSH_KNOWN_HOSTS",
    "SSH_CONFIG",
    "GHOSTHANDS_DIR",
    "GH_ENVIRONMENT",
    "IMAGE_TAG",
    "GH_API_PORT",
    "GH_WORKER_PORT",
    "HEALTH_TIMEOUT",
    "DRAIN_TIMEOUT",
    "STOP_TIMEOUT",
    "AGENT_TAG",
    "AGENT_INTERVAL",
    "AGENT_FLEET_TABLE",
    "AGENT_FLEET_BATCH",
    "DEPLOY_WEBHOOK_SECRET",
    "DEPLOY_API_TOKEN",
    "DATABASE_URL",
    "DEPLOY_CALLBACK_URL",
    "WEBHOOK_MAX_AGE",
    "RETAIN_RELEASES",
    "DISK_RESERVE_MB",
    "GH_PLATFORM",
]


@dataclass(frozen=True, repr=False)
class Config:
    """Resolved settings, read-only. The keys a command needs were validated when it loaded them;
    reading another key parses it then (a bad or missing value is a ConfigError, never a crash)."""

    # --- the schema: every key, in the order of README's table -----------------------------
    ecr_registry = required(
        "ECR_REGISTRY",
        registry_host,
        "registry host[:port], e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com",
        _REGISTRY_USERS,
    )
    ecr_registry_override = setting(
        "ECR_REGISTRY_OVERRIDE",
        choice("0", "1"),
        "0",
        "1: send the ECR token to ECR_REGISTRY even though it is not the registry ECR names "
        "(a stand-in registry); process environment only, refused in an env file",
        _AWS_USERS,
        process_only=True,
    )
    ecr_repository = setting(
        "ECR_REPOSITORY",
        pattern(REPOSITORY_RE, "a repository name (lower case, digits, . _ - /)"),
        "ghosthands",
        "repository in the registry",
        (*_REGISTRY_USERS, ROLLBACK),
    )
    aws_region = required(
        "AWS_REGION",
        pattern(REGION_RE, "an AWS region like us-east-1"),
        "region of the registry and of ASG_NAME",
        _AWS_USERS,
    )
    ec2_host = optional(
        "EC2_HOST",
        host_list,
        "user@host[:port]; comma-separated = a fleet, deployed in that order (or ASG_NAME)",
        (*_SSH_USERS, HOSTS),
    )
    asg_name = optional(
        "ASG_NAME",
        pattern(ASG_RE, "an Auto Scaling Group name"),
        "Auto Scaling Group whose InService instances are the hosts (instead of EC2_HOST)",
        (*_SSH_USERS, HOSTS),
    )
    ssh_address = setting(
        "SSH_ADDRESS",
        choice("private", "public"),
        "private",
        "which address of an ASG instance to use: private or public",
        (*_SSH_USERS, HOSTS),
    )
    ssh_user = setting(
        "SSH_USER",
        pattern(USER_RE, "a user name (letters, digits, _ . -; not starting with a digit, '-' or '.')"),
        "ec2-user",
        "user for hosts found through ASG_NAME",
        (*_SSH_USERS, HOSTS),
    )
    ec2_key = required(
        "EC2_KEY", local_path, "SSH private key file (.pem); ~ is expanded", _SSH_USERS, check=readable_file
    )
    ssh_known_hosts = setting(
        "SSH_KNOWN_HOSTS",
        local_path,
        "~/.ssh/known_hosts",
        "known_hosts file checked for host keys (and written with --accept-new-host-key)",
        _SSH_USERS,
        check=not_a_directory,
    )
    ssh_config = setting(
        "SSH_CONFIG",
        local_path,
        "~/.ssh/config",
        "OpenSSH client config honoured for hosts (HostName, User, Port, IdentityFile, ProxyJump)",
        _SSH_USERS,
        check=file_if_explicit,
    )
    ghosthands_dir = setting("GHOSTHANDS_DIR", remote_dir, "/opt/ghosthands", "app directory on each host", _HOST_USERS)
    gh_environment = setting(
        "GH_ENVIRONMENT",
        choice(*COMPOSE_FILES),
        "production",
        "production -> docker-compose.prod.yml, staging -> docker-compose.staging.yml",
        (*_HOST_USERS, NOTIFY),
    )
    image_tag = optional(
        "IMAGE_TAG",
        docker_tag,
        "image tag to build, push, deploy (default: short SHA of HEAD)",
        (BUILD, PUSH, DEPLOY, NOTIFY),
    )
    gh_api_port = setting("GH_API_PORT", port, "3100", "api port on each host's localhost", _HOST_USERS)
    gh_worker_port = setting("GH_WORKER_PORT", port, "3101", "worker status port on each host's localhost", _HOST_USERS)
    health_timeout = setting(
        "HEALTH_TIMEOUT",
        seconds(1, 3600),
        "60",
        "seconds to wait for /health to answer 200 after a restart",
        _OPERATION_USERS,
    )
    drain_timeout = setting(
        "DRAIN_TIMEOUT",
        seconds(0, 86400),
        "60",
        "seconds to wait for the worker to drain before SIGTERM",
        _OPERATION_USERS,
    )
    stop_timeout = setting(
        "STOP_TIMEOUT",
        seconds(0, 3600),
        "35",
        "seconds `docker compose stop` gives the worker before SIGKILL",
        _OPERATION_USERS,
    )
    agent_tag = setting("AGENT_TAG", docker_tag, "latest", "agent: the tag it follows in the registry", (AGENT,))
    agent_interval = setting(
        "AGENT_INTERVAL",
        seconds(AGENT_MIN_INTERVAL, 86400),
        "60",
        f"agent: seconds between polls of the registry (at least {AGENT_MIN_INTERVAL})",
        (AGENT,),
    )
    agent_fleet_table = optional(
        "AGENT_FLEET_TABLE",
        pattern(TABLE_RE, "a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"),
        "agent: DynamoDB table that coordinates the fleet's agents (unset: each host alone)",
        (AGENT,),
    )
    agent_fleet_batch = setting(
        "AGENT_FLEET_BATCH",
        integer(1, 1000, "hosts"),
        "1",
        "agent: hosts of the fleet that may switch at the same time",
        (AGENT,),
    )
    # The webhook receiver (serve) and its CI sender (notify). Secrets come from the environment or
    # the env file only; server/settings.py applies DATABASE_URL's default (./ghdeploy-serve.db).
    deploy_webhook_secret = required(
        "DEPLOY_WEBHOOK_SECRET",
        shared_secret,
        "the secret CI signs webhooks with (HMAC-SHA256), at least 16 characters",
        (SERVE, NOTIFY),
        secret=True,
    )
    deploy_api_token = required(
        "DEPLOY_API_TOKEN",
        shared_secret,
        "bearer token for GET /api/v1/deploys, at least 16 characters",
        (SERVE, NOTIFY_WAIT),
        secret=True,
    )
    database_url = optional(
        "DATABASE_URL",
        database_url,
        "sqlite:///PATH or postgresql://user:pass@host/db (default: ./ghdeploy-serve.db)",
        (SERVE,),
        secret=True,  # may hold a password
    )
    deploy_callback_url = optional(
        "DEPLOY_CALLBACK_URL", http_url, "where to POST the signed deploy_finished report", (SERVE,)
    )
    webhook_max_age = setting(
        "WEBHOOK_MAX_AGE", seconds(1, 86400), "300", "seconds a webhook's sent_at may be old", (SERVE,)
    )
    # day-2: disk and platform
    retain_releases = setting(
        "RETAIN_RELEASES",
        integer(1, 100, "releases"),
        "3",
        "releases whose images each host keeps for rollback; older images of the repository are removed",
        (DEPLOY, PRUNE, AGENT),
    )
    disk_reserve_mb = setting(
        "DISK_RESERVE_MB",
        integer(0, 10_000_000, "MB"),
        "1024",
        "free space the docker data root must keep after pulling the new image, or preflight refuses",
        (DEPLOY,),
    )
    gh_platform = setting(
        "GH_PLATFORM",
        platforms,
        "linux/amd64",
        "platform(s) `build` builds for; must match the hosts' architecture",
        (BUILD, DEPLOY),
    )
    # --- end of the schema ----------------------------------------------------------------

    values: Mapping[str, str] = field(default_factory=dict)  # raw text of every key that has one
    sources: Mapping[str, str] = field(default_factory=dict)  # key -> "flag --tag" | "environment" | file | "default"
    env_file: Path | None = None
    checked: frozenset[str] = frozenset()  # the keys validated at load time
    warnings: tuple[str, ...] = ()  # e.g. a misspelt key in the env file, which nothing reads
    _parsed: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: KEYS[k].shown(v) if k in KEYS else "?" for k, v in self.values.items()}
        return f"Config({shown}, env_file={self.env_file})"

    def _typed(self, key: Key[Any]) -> Any:
        if key.name in self._parsed:
            return self._parsed[key.name]
        # A key the command did not declare: parse it now, with the same rules.
        problems: list[str] = []
        value = _parse_one(key, self.values.get(key.name), self.sources.get(key.name, ""), problems)
        if problems:
            raise ConfigError(problems, _hint(self, problems))
        return value

    # --- derived values -----------------------------------------------------------------

    @property
    def hosts(self) -> list[Host]:
        """EC2_HOST's hosts in order ([] when the hosts come from ASG_NAME)."""
        return list(self.ec2_host or ()) if "EC2_HOST" in self.values else []

    @property
    def ssh_config_in_use(self) -> Path | None:
        """The OpenSSH config to honour, or None when the default one does not exist."""
        path = self.ssh_config
        return path if path.is_file() else None

    @property
    def registry(self) -> str:
        return self.ecr_registry

    @property
    def repository(self) -> str:
        return self.ecr_repository

    @property
    def image_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def compose_file(self) -> str:
        return f"{self.ghosthands_dir.rstrip('/')}/{COMPOSE_FILES[self.gh_environment]}"

    def flag_of(self, name: KeyName) -> str | None:
        """The flag a value came from (`--tag`, `--to`), or None when it came from config."""
        source = self.sources.get(name, "")
        return source.split(" ", 1)[1] if source.startswith("flag ") else None

    # --- the string accessors (typed attributes are preferred) -------------------------------

    def get(self, name: KeyName) -> str | None:
        """Raw text of a key, or None when unset."""
        _declared(name)
        return self.values.get(name)

    def text(self, name: KeyName) -> str:
        value = self.values.get(_declared(name))
        if value is None:  # a bug: the command asked for a key that has no value
            raise KeyError(name)
        return value

    def number(self, name: KeyName) -> int:
        self.text(name)
        value = getattr(self, KEYS[name].attr)
        if not isinstance(value, int):
            raise TypeError(f"{name} is not a number")
        return value

    def path(self, name: KeyName) -> Path:
        self.text(name)
        return Path(self.text(name)).expanduser()


KEYS: dict[str, Key[Any]] = {k.name: k for k in vars(Config).values() if isinstance(k, Key)}


def _declared(name: str) -> str:
    if name not in KEYS:
        raise KeyError(f"{name} is not a declared config key (declare it in ghdeploy/config.py)")
    return name


def keys_for(command: str) -> tuple[str, ...]:
    """The keys a command needs, in schema order. A variant (`notify --wait`) needs its command's keys too."""
    wanted = {command, command.split(" ", 1)[0]}
    return tuple(name for name, key in KEYS.items() if wanted & key.commands)


COMMAND_ORDER = (
    BUILD,
    PUSH,
    DEPLOY,
    ROLLBACK,
    ROLLBACK_TO,
    HOSTS,
    *READ_ONLY,
    PRUNE,
    AGENT,
    SERVE,
    NOTIFY,
    NOTIFY_WAIT,
)


def documented_commands(name: str) -> list[str]:
    """The commands README's table lists for a key (`rollback --to` only when plain rollback does not use it)."""
    used = KEYS[name].commands
    shown = [c for c in used if not (c == ROLLBACK_TO and ROLLBACK in used)]
    return sorted(shown, key=lambda c: (COMMAND_ORDER.index(c) if c in COMMAND_ORDER else len(COMMAND_ORDER), c))


# What each command needs (kept as names because tests and older call sites use them).
BUILD_KEYS = keys_for(BUILD)
PUSH_KEYS = keys_for(PUSH)
HOST_KEYS = keys_for("status")
DEPLOY_KEYS = keys_for(DEPLOY)
AGENT_KEYS = keys_for(AGENT)


# --- loading ------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _find_env_file(env_file: Path | None, cwd: Path | None) -> Path | None:
    if env_file is not None:
        env_file = env_file.expanduser()
        if env_file.is_dir():
            raise ConfigError(
                f"--env-file {env_file} is a directory", f"name the file itself, e.g. {env_file / DEFAULT_ENV_FILE}"
            )
        if not env_file.exists():
            raise ConfigError(f"--env-file {env_file}: no such file", "check the --env-file path")
        if not env_file.is_file():
            raise ConfigError(f"--env-file {env_file} is not a regular file", "name a file of KEY=value lines")
        return env_file
    candidate = (cwd or Path.cwd()) / DEFAULT_ENV_FILE
    return candidate if candidate.is_file() else None


def load_config(
    *,
    needs: Iterable[str] | None = None,
    command: str | None = None,
    env_file: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    flag_names: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every declared key, then validate those a command needs (`command=` or `needs=`).

    `overrides` are flag values by key (None: flag not given); `flag_names` says which flag set
    each key (`{"IMAGE_TAG": "--to"}`), so errors name the flag. Raises ConfigError listing all problems.
    """
    environ = os.environ if environ is None else environ
    used_file = _find_env_file(env_file, cwd)
    file_values: dict[str, str] = {}
    if used_file is not None:
        try:
            file_values = read_env_file(used_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {used_file}: {exc}", "check the file's permissions and encoding") from None

    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    file_problems: list[str] = []
    for name, key in KEYS.items():
        flag = (overrides or {}).get(name)
        if flag is not None:
            flag_name = (flag_names or {}).get(name)
            values[name], sources[name] = flag, f"flag {flag_name}" if flag_name else "flag"
        elif environ.get(name):
            values[name], sources[name] = environ[name], "environment"
        elif file_values.get(name) and key.process_only:
            file_problems.append(
                f"{name} is set in {used_file}: it is read only from the process environment "
                f"(a committed file must not decide where the ECR token goes); `export {name}=...` for the session"
            )
        elif file_values.get(name):
            values[name], sources[name] = file_values[name], str(used_file)
        elif key.default is not None:
            values[name], sources[name] = key.default, "default"
        if name in values and key.parse is local_path:
            values[name] = os.path.expanduser(values[name])

    # A value given as a flag is always checked, whatever the command declared.
    given = {name for name, value in (overrides or {}).items() if value is not None}
    needed = set(needs or ()) | set(keys_for(command) if command else ()) | given
    unknown = needed - KEYS.keys()
    if unknown:
        raise KeyError(f"undeclared config keys {sorted(unknown)}")
    problems: list[str] = list(file_problems)
    parsed: dict[str, Any] = {}
    for name in KEYS:
        if name in needed:
            parsed[name] = _parse_one(KEYS[name], values.get(name), sources.get(name, ""), problems)
    draft = Config(values=MappingProxyType(values), sources=MappingProxyType(sources), env_file=used_file)
    _cross_checks(values, sources, needed, parsed, problems)
    if problems:
        raise ConfigError(problems, _hint(draft, problems))
    return Config(
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
        env_file=used_file,
        checked=frozenset(needed),
        warnings=tuple(_stray_file_keys(used_file, file_values, environ)),
        _parsed=MappingProxyType(parsed),
    )


# Read by boto3, docker or ghdeploy's output from the process environment, never from the env file.
PROCESS_SETTINGS = ("DOCKER_HOST", "SSL_CERT_FILE", "NO_COLOR")


def _stray_file_keys(path: Path | None, file_values: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """Lines of the env file that nothing reads: a misspelt key would otherwise be ignored in silence."""
    import difflib

    notes: list[str] = []
    for name, value in file_values.items():
        if name in KEYS or environ.get(name) == value:  # the same value exported too (systemd EnvironmentFile)
            continue
        if name.startswith("AWS_") or name in PROCESS_SETTINGS:
            notes.append(f"{path}: {name} is ignored there: it is read from the process environment (export it)")
            continue
        close = difflib.get_close_matches(name, list(KEYS), n=1, cutoff=0.75)
        notes.append(
            f"{path}: {name} is not a ghdeploy key, ignored" + (f" (did you mean {close[0]}?)" if close else "")
        )
    return notes


def _label(key: Key[Any], source: str) -> str:
    return source.split(" ", 1)[1] if source.startswith("flag ") else key.name


def _parse_one(key: Key[Any], raw: str | None, source: str, problems: list[str]) -> Any:
    if raw is None:
        if key.required:
            problems.append(f"{key.name} is not set ({key.help})")
        return None
    label = _label(key, source)
    sep = " " if label.startswith("-") else "="
    try:
        value = key.parse(raw)
        why = key.check(value, source != "default") if key.check is not None else None
    except ValueError as exc:
        why = str(exc)
    if why is None:
        return value
    # A secret's value is never shown, not even in an error: the reason follows the key's name.
    problems.append(f"{label} {why}" if key.secret else f"{label}{sep}{key.shown(raw)}: {why}")
    return None


def check_value(name: str, raw: str | None, source: str = "environment") -> list[str]:
    """The problems of one value of a declared key (for code that resolves a key itself)."""
    problems: list[str] = []
    _parse_one(KEYS[_declared(name)], raw, source, problems)
    return problems


def _cross_checks(
    values: Mapping[str, str],
    sources: Mapping[str, str],
    needed: set[str],
    parsed: Mapping[str, Any],
    problems: list[str],
) -> None:
    """Rules between keys."""
    if "EC2_HOST" in needed or "ASG_NAME" in needed:
        if "EC2_HOST" in values and "ASG_NAME" in values:
            problems.append("EC2_HOST and ASG_NAME are both set: choose one")
        elif "EC2_HOST" not in values and "ASG_NAME" not in values:
            problems.append("EC2_HOST is not set (user@host[:port], comma-separated), nor ASG_NAME")
        if "ASG_NAME" in values and "AWS_REGION" not in needed:  # finding the group's instances needs a region
            if "AWS_REGION" not in values:
                problems.append(f"AWS_REGION is not set ({KEYS['AWS_REGION'].help}); ASG_NAME needs it")
            else:
                _parse_one(KEYS["AWS_REGION"], values["AWS_REGION"], sources.get("AWS_REGION", ""), problems)
    api, worker = parsed.get("GH_API_PORT"), parsed.get("GH_WORKER_PORT")
    if api is not None and api == worker:
        problems.append(f"GH_API_PORT and GH_WORKER_PORT are both {api}: the api and the worker need their own ports")


def _hint(config: Config, problems: list[str]) -> str:
    if all(p.startswith("-") for p in problems):
        return "fix the value of the flag named above (see the command's --help)"
    where = f" (read {config.env_file})" if config.env_file else f" (no {DEFAULT_ENV_FILE} here)"
    return f"set them in {DEFAULT_ENV_FILE} or the environment{where}; {DEFAULT_ENV_FILE}.example documents every key"
