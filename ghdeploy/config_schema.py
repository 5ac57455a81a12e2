"""The config schema: every key ghdeploy reads, declared once in the body of `Config`.

Loading (flags, environment, env file) is ghdeploy/config.py; checking values, config_checks.py.

HOW TO ADD A KEY (one place; tests then insist on the rest):
  1. Declare it in the body of `Config` below, with the parser (ghdeploy/grammar.py) of its grammar/range:
         agent_interval = setting("AGENT_INTERVAL", seconds(1, 3600), "30", "seconds between checks", ("agent",))
     `setting` has a default (its type is the parser's), `optional` may be unset (type `T | None`),
     `required` must be set for the listed commands. Pass `secret=True` for tokens and passwords:
     their values are never printed, not even in an error.
  2. Add its name to `KeyName` in config_keys.py (so `config.text("AGENT_INTERVAL")` type-checks), document it in
     `.env.deploy.example` and in README's configuration table (same default, same commands).
     tests/unit/test_config_schema.py fails until all three agree.
  3. Read it as a typed attribute: `config.agent_interval` (mypy rejects a misspelt one). A command
     loads with `load_config(command="agent")`, which validates exactly the keys that name "agent".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghdeploy.config_checks import hint, parse_one
from ghdeploy.config_keys import Key, KeyName, optional, required, setting
from ghdeploy.errors import ConfigError
from ghdeploy.grammar import (
    AGENT_MIN_INTERVAL,
    ASG_RE,
    COMPOSE_FILES,
    REGION_RE,
    REPOSITORY_RE,
    TABLE_RE,
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
    pull_parallel = setting(
        "PULL_PARALLEL",
        integer(1, 256, "hosts"),
        "16",
        "hosts that pull the new image at the same time, before the rolling switch (mind ECR's pull quotas)",
        (DEPLOY, SERVE),
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
        value = parse_one(key, self.values.get(key.name), self.sources.get(key.name, ""), problems)
        if problems:
            raise ConfigError(problems, hint(self.env_file, problems))
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
        declared(name)
        return self.values.get(name)

    def text(self, name: KeyName) -> str:
        value = self.values.get(declared(name))
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


def declared(name: str) -> str:
    if name not in KEYS:
        raise KeyError(f"{name} is not a declared config key (declare it in ghdeploy/config_schema.py)")
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
