"""Configuration: `.env.deploy` (or --env-file), the process environment and flags.

Precedence: command-line flag > process environment > env file > default. The file is read with
python-dotenv's `dotenv_values`, which never touches `os.environ`. Each command asks only for the
keys it needs, and validation reports every problem at once before anything runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ghdeploy.errors import ConfigError
from ghdeploy.hosts import Host, parse_host_list

DEFAULT_ENV_FILE = ".env.deploy"

# docker's tag grammar: https://docs.docker.com/reference/cli/docker/image/tag/
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# registry host[:port] (ECR: 123456789012.dkr.ecr.us-east-1.amazonaws.com)
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# docker repository path components
REPOSITORY_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# DynamoDB table names
TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
AGENT_MIN_INTERVAL = 5
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
ASG_RE = re.compile(r"^[\w+=,.@/-]{1,255}$")


@dataclass(frozen=True)
class KeySpec:
    name: str
    help: str
    default: str | None = None


KEYS: dict[str, KeySpec] = {
    k.name: k
    for k in [
        KeySpec("ECR_REGISTRY", "registry host, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com"),
        KeySpec("ECR_REPOSITORY", "repository name in the registry", "ghosthands"),
        KeySpec("AWS_REGION", "AWS region of the registry (and of ASG_NAME)"),
        KeySpec("EC2_HOST", "user@host[:port]; a comma-separated list is a fleet, deployed in that order"),
        KeySpec("ASG_NAME", "Auto Scaling Group whose InService instances are the hosts (instead of EC2_HOST)"),
        KeySpec("SSH_ADDRESS", "private|public: which address of an ASG instance to use", "private"),
        KeySpec("SSH_USER", "user for hosts found through ASG_NAME", "ec2-user"),
        KeySpec("EC2_KEY", "path to the SSH private key (.pem)"),
        KeySpec("SSH_KNOWN_HOSTS", "known_hosts file checked for host keys", "~/.ssh/known_hosts"),
        KeySpec(
            "SSH_CONFIG",
            "OpenSSH client config honoured for hosts (HostName, User, Port, IdentityFile, ProxyJump)",
            "~/.ssh/config",
        ),
        KeySpec("GHOSTHANDS_DIR", "app directory on each host", "/opt/ghosthands"),
        KeySpec("IMAGE_TAG", "image tag to build/push/deploy (default: short SHA of HEAD)"),
        KeySpec(
            "GH_ENVIRONMENT",
            "production|staging: picks docker-compose.prod.yml or docker-compose.staging.yml",
            "production",
        ),
        KeySpec("GH_API_PORT", "api port on each host", "3100"),
        KeySpec("GH_WORKER_PORT", "worker status port on each host", "3101"),
        KeySpec("HEALTH_TIMEOUT", "seconds to wait for /health to answer 200 after a restart", "60"),
        KeySpec("DRAIN_TIMEOUT", "seconds to wait for the worker to drain before SIGTERM", "60"),
        KeySpec("STOP_TIMEOUT", "seconds `docker compose stop` gives the worker before SIGKILL", "35"),
        KeySpec("AGENT_TAG", "agent: the tag it follows in the registry", "latest"),
        KeySpec("AGENT_INTERVAL", "agent: seconds between polls of the registry (at least 5)", "60"),
        KeySpec(
            "AGENT_FLEET_TABLE", "agent: DynamoDB table that coordinates the fleet's agents (unset: each host alone)"
        ),
        KeySpec("AGENT_FLEET_BATCH", "agent: hosts of the fleet that may switch at the same time", "1"),
    ]
}

COMPOSE_FILES = {"production": "docker-compose.prod.yml", "staging": "docker-compose.staging.yml"}

# What each command needs (keys beyond these are not validated for that command).
BUILD_KEYS = ("ECR_REGISTRY", "ECR_REPOSITORY", "IMAGE_TAG")
PUSH_KEYS = (*BUILD_KEYS, "AWS_REGION")
HOST_KEYS = (
    "EC2_HOST",
    "ASG_NAME",
    "SSH_ADDRESS",
    "SSH_USER",
    "EC2_KEY",
    "SSH_KNOWN_HOSTS",
    "SSH_CONFIG",
    "GHOSTHANDS_DIR",
    "GH_ENVIRONMENT",
    "GH_API_PORT",
    "GH_WORKER_PORT",
)
DEPLOY_KEYS = (*PUSH_KEYS, *HOST_KEYS, "HEALTH_TIMEOUT", "DRAIN_TIMEOUT", "STOP_TIMEOUT")
# The agent runs on the host itself: no EC2_HOST/EC2_KEY/SSH settings.
AGENT_KEYS = (
    "ECR_REGISTRY",
    "ECR_REPOSITORY",
    "AWS_REGION",
    "GHOSTHANDS_DIR",
    "GH_ENVIRONMENT",
    "GH_API_PORT",
    "GH_WORKER_PORT",
    "HEALTH_TIMEOUT",
    "DRAIN_TIMEOUT",
    "STOP_TIMEOUT",
    "AGENT_TAG",
    "AGENT_INTERVAL",
    "AGENT_FLEET_TABLE",
    "AGENT_FLEET_BATCH",
)


@dataclass
class Config:
    """Resolved settings. Only the keys a command asked for are guaranteed valid."""

    values: dict[str, str]
    sources: dict[str, str]
    env_file: Path | None
    hosts: list[Host] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def text(self, key: str) -> str:
        value = self.values.get(key)
        if value is None:  # a bug: the command did not ask for this key
            raise KeyError(key)
        return value

    def number(self, key: str) -> int:
        return int(self.text(key))

    def path(self, key: str) -> Path:
        return Path(self.text(key)).expanduser()

    @property
    def registry(self) -> str:
        return self.text("ECR_REGISTRY")

    @property
    def repository(self) -> str:
        return self.text("ECR_REPOSITORY")

    @property
    def image_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def compose_file(self) -> str:
        return f"{self.text('GHOSTHANDS_DIR').rstrip('/')}/{COMPOSE_FILES[self.text('GH_ENVIRONMENT')]}"


def read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_config(
    *,
    needs: Iterable[str],
    env_file: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every known key, then validate those in `needs`. Raises ConfigError listing all problems."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    file_values: dict[str, str] = {}
    used_file: Path | None = None
    if env_file is not None:
        env_file = env_file.expanduser()
        if not env_file.is_file():
            raise ConfigError(f"env file {env_file} not found", "check the --env-file path")
        used_file = env_file
    else:
        candidate = (cwd or Path.cwd()) / DEFAULT_ENV_FILE
        if candidate.is_file():
            used_file = candidate
    if used_file is not None:
        try:
            file_values = read_env_file(used_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {used_file}: {exc}") from None

    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, spec in KEYS.items():
        flag = (overrides or {}).get(key)
        if flag is not None:
            values[key], sources[key] = flag, "flag"
        elif environ.get(key):
            values[key], sources[key] = environ[key], "environment"
        elif file_values.get(key):
            values[key], sources[key] = file_values[key], str(used_file)
        elif spec.default is not None:
            values[key], sources[key] = spec.default, "default"
    for key in ("EC2_KEY", "SSH_KNOWN_HOSTS", "SSH_CONFIG"):
        if key in values:
            values[key] = os.path.expanduser(values[key])

    config = Config(values=values, sources=sources, env_file=used_file)
    needed = set(needs)
    _validate(config, needed, problems)
    if problems:
        where = f" (read {used_file})" if used_file else f" (no {DEFAULT_ENV_FILE} here)"
        raise ConfigError(
            problems,
            f"set them in {DEFAULT_ENV_FILE} or the environment{where}; {DEFAULT_ENV_FILE}.example documents every key",
        )
    return config


def _validate(config: Config, needed: set[str], problems: list[str]) -> None:
    v = config.values

    def missing(key: str) -> None:
        problems.append(f"{key} is not set ({KEYS[key].help})")

    def check(key: str, ok: bool, why: str) -> None:
        if key in v and not ok:
            problems.append(f"{key}={v[key]!r}: {why}")

    if "ECR_REGISTRY" in needed:
        if "ECR_REGISTRY" not in v:
            missing("ECR_REGISTRY")
        check("ECR_REGISTRY", bool(REGISTRY_RE.match(v.get("ECR_REGISTRY", ""))), "not a registry host[:port]")
    if "ECR_REPOSITORY" in needed:
        check(
            "ECR_REPOSITORY",
            bool(REPOSITORY_RE.match(v.get("ECR_REPOSITORY", ""))),
            "not a valid repository name (lower case, digits, . _ - /)",
        )
    if "IMAGE_TAG" in needed:
        check(
            "IMAGE_TAG",
            bool(TAG_RE.match(v.get("IMAGE_TAG", ""))),
            "not a valid docker tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
        )
    if "AWS_REGION" in needed:
        if "AWS_REGION" not in v:
            missing("AWS_REGION")
        check("AWS_REGION", bool(REGION_RE.match(v.get("AWS_REGION", ""))), "not an AWS region like us-east-1")
    if "EC2_HOST" in needed:
        if "EC2_HOST" in v:
            try:
                config.hosts = parse_host_list(v["EC2_HOST"])
            except ValueError as exc:
                problems.append(f"EC2_HOST={v['EC2_HOST']!r}: {exc} (expected user@host[:port], comma-separated)")
        elif "ASG_NAME" not in v:
            problems.append("EC2_HOST is not set (user@host[:port], comma-separated), nor ASG_NAME")
    if "ASG_NAME" in needed:
        check("ASG_NAME", bool(ASG_RE.match(v.get("ASG_NAME", ""))), "not an Auto Scaling Group name")
        if "ASG_NAME" in v and "EC2_HOST" in v:
            problems.append("EC2_HOST and ASG_NAME are both set: choose one")
        if "ASG_NAME" in v and "AWS_REGION" not in v and "AWS_REGION" not in needed:
            missing("AWS_REGION")
    if "SSH_ADDRESS" in needed:
        check("SSH_ADDRESS", v.get("SSH_ADDRESS") in ("private", "public"), "must be private or public")
    if "EC2_KEY" in needed:
        if "EC2_KEY" not in v:
            missing("EC2_KEY")
        else:
            key_path = Path(v["EC2_KEY"])
            if not key_path.is_file():
                problems.append(f"EC2_KEY={v['EC2_KEY']!r}: no such file")
            elif not os.access(key_path, os.R_OK):
                problems.append(f"EC2_KEY={v['EC2_KEY']!r}: not readable")
    if "GHOSTHANDS_DIR" in needed:
        check(
            "GHOSTHANDS_DIR",
            v.get("GHOSTHANDS_DIR", "").startswith("/") and "\n" not in v.get("GHOSTHANDS_DIR", ""),
            "must be an absolute path",
        )
    if "GH_ENVIRONMENT" in needed:
        check("GH_ENVIRONMENT", v.get("GH_ENVIRONMENT") in COMPOSE_FILES, "must be production or staging")
    for port_key in ("GH_API_PORT", "GH_WORKER_PORT"):
        if port_key in needed:
            text = v.get(port_key, "")
            check(port_key, text.isdigit() and 1 <= int(text) <= 65535, "not a port number (1-65535)")
    for timeout_key in ("HEALTH_TIMEOUT", "DRAIN_TIMEOUT", "STOP_TIMEOUT"):
        if timeout_key in needed:
            text = v.get(timeout_key, "")
            check(timeout_key, text.isdigit() and int(text) <= 86400, "not a whole number of seconds")
    if "AGENT_TAG" in needed:
        check("AGENT_TAG", bool(TAG_RE.match(v.get("AGENT_TAG", ""))), "not a valid docker tag")
    if "AGENT_INTERVAL" in needed:
        text = v.get("AGENT_INTERVAL", "")
        check(
            "AGENT_INTERVAL",
            text.isdigit() and AGENT_MIN_INTERVAL <= int(text) <= 86400,
            f"not a whole number of seconds from {AGENT_MIN_INTERVAL} to 86400",
        )
    if "AGENT_FLEET_TABLE" in needed:
        check("AGENT_FLEET_TABLE", bool(TABLE_RE.match(v.get("AGENT_FLEET_TABLE", ""))), "not a DynamoDB table name")
    if "AGENT_FLEET_BATCH" in needed:
        text = v.get("AGENT_FLEET_BATCH", "")
        check("AGENT_FLEET_BATCH", text.isdigit() and 1 <= int(text) <= 1000, "not a number of hosts (1 or more)")
