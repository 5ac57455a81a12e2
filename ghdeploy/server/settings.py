"""The receiver's own keys, resolved like every other key: environment > env file > default.

Secrets (DEPLOY_WEBHOOK_SECRET, DEPLOY_API_TOKEN) come only from the environment or the env
file, never from a flag, and no message here ever contains their values (nor DATABASE_URL's,
which may hold a password).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ghdeploy.config import KEYS, MIN_SECRET, Config, check_value, read_env_file
from ghdeploy.errors import ConfigError

DEFAULT_DATABASE = "ghdeploy-serve.db"
DEFAULT_MAX_AGE = "300"
__all__ = ["MIN_SECRET", "ServerSettings", "resolve", "server_settings"]
# The keys, their grammar and help are declared in ghdeploy/config.py's schema.
HELP = {name: KEYS[name].help for name in KEYS if name.startswith(("DEPLOY_", "DATABASE_", "WEBHOOK_"))}
SECRETS = ("DEPLOY_WEBHOOK_SECRET", "DEPLOY_API_TOKEN")


@dataclass(frozen=True)
class ServerSettings:
    webhook_secret: str
    api_token: str
    database_url: str
    callback_url: str | None
    max_age: float


def resolve(
    config: Config, needs: Iterable[str], environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> dict[str, str]:
    """The values of the receiver's keys in `needs`; ConfigError lists every problem at once."""
    environ = os.environ if environ is None else environ
    file_values = read_env_file(config.env_file) if config.env_file is not None else {}
    defaults = {
        "DATABASE_URL": f"sqlite:///{(cwd or Path.cwd()) / DEFAULT_DATABASE}",
        "WEBHOOK_MAX_AGE": DEFAULT_MAX_AGE,
    }
    values: dict[str, str] = {}
    problems: list[str] = []
    for key in needs:
        value = environ.get(key) or file_values.get(key) or defaults.get(key)
        if value:
            values[key] = value.strip() if key in SECRETS else value
        elif key != "DEPLOY_CALLBACK_URL":
            problems.append(f"{key} is not set ({HELP[key]})")
    for key, value in values.items():
        problems += check_value(key, value)
    if problems:
        raise ConfigError(problems, "set them in the environment or the env file; secrets never go on a command line")
    return values


def server_settings(
    config: Config, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ServerSettings:
    values = resolve(
        config,
        ("DEPLOY_WEBHOOK_SECRET", "DEPLOY_API_TOKEN", "DATABASE_URL", "DEPLOY_CALLBACK_URL", "WEBHOOK_MAX_AGE"),
        environ,
        cwd,
    )
    return ServerSettings(
        webhook_secret=values["DEPLOY_WEBHOOK_SECRET"],
        api_token=values["DEPLOY_API_TOKEN"],
        database_url=values["DATABASE_URL"],
        callback_url=values.get("DEPLOY_CALLBACK_URL"),
        max_age=float(values["WEBHOOK_MAX_AGE"]),
    )
