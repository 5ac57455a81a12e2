"""Configuration, loaded: every declared key resolved from flags, the environment and `.env.deploy`.

The keys are declared once in ghdeploy/config_schema.py (how to add one is written there); one
value is checked by ghdeploy/config_checks.py. Callers import all of it from here.

Precedence: command-line flag > process environment > env file > default. The file is read with
python-dotenv's `dotenv_values`, which never touches `os.environ`. Validation reports every problem
at once (exit 2) before anything runs, and imports nothing from the network stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ghdeploy.config_checks import DEFAULT_ENV_FILE, PROCESS_SETTINGS, cross_checks, hint, parse_one, stray_file_keys
from ghdeploy.config_keys import Key, KeyName
from ghdeploy.config_schema import (
    AGENT_KEYS,
    BUILD_KEYS,
    DEPLOY_KEYS,
    HOST_KEYS,
    KEYS,
    PUSH_KEYS,
    Config,
    declared,
    documented_commands,
    keys_for,
)
from ghdeploy.errors import ConfigError
from ghdeploy.grammar import COMPOSE_FILES, MIN_SECRET, TAG_RE, local_path, pattern
from ghdeploy.hosts import Host

# Names other modules import from here (the schema's and the checks' too).
__all__ = [
    "AGENT_KEYS",
    "BUILD_KEYS",
    "COMPOSE_FILES",
    "DEFAULT_ENV_FILE",
    "DEPLOY_KEYS",
    "HOST_KEYS",
    "KEYS",
    "MIN_SECRET",
    "PROCESS_SETTINGS",
    "PUSH_KEYS",
    "TAG_RE",
    "Config",
    "Host",
    "Key",
    "KeyName",
    "check_value",
    "documented_commands",
    "keys_for",
    "load_config",
    "pattern",
    "read_env_file",
]


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
            parsed[name] = parse_one(KEYS[name], values.get(name), sources.get(name, ""), problems)
    cross_checks(KEYS, values, sources, needed, parsed, problems)
    if problems:
        raise ConfigError(problems, hint(used_file, problems))
    return Config(
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
        env_file=used_file,
        checked=frozenset(needed),
        warnings=tuple(stray_file_keys(KEYS, used_file, file_values, environ)),
        _parsed=MappingProxyType(parsed),
    )


def check_value(name: str, raw: str | None, source: str = "environment") -> list[str]:
    """The problems of one value of a declared key (for code that resolves a key itself)."""
    problems: list[str] = []
    parse_one(KEYS[declared(name)], raw, source, problems)
    return problems
