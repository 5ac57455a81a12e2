"""Checking config values: one value against its key's grammar, the rules between keys, and the
hint a ConfigError carries. Functions of the declared Keys (ghdeploy/config_schema.py) and of raw
text; only the standard library, so checking input imports nothing from the network stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ghdeploy.config_keys import Key

DEFAULT_ENV_FILE = ".env.deploy"

# Read by boto3, docker or ghdeploy's output from the process environment, never from the env file.
PROCESS_SETTINGS = ("DOCKER_HOST", "SSL_CERT_FILE", "NO_COLOR")


def label(key: Key[Any], source: str) -> str:
    """What an error names: the flag a value came from, else the key."""
    return source.split(" ", 1)[1] if source.startswith("flag ") else key.name


def parse_one(key: Key[Any], raw: str | None, source: str, problems: list[str]) -> Any:
    """The typed value of `raw` (None when unset or bad); what is wrong is appended to `problems`."""
    if raw is None:
        if key.required:
            problems.append(f"{key.name} is not set ({key.help})")
        return None
    shown_as = label(key, source)
    sep = " " if shown_as.startswith("-") else "="
    try:
        value = key.parse(raw)
        why = key.check(value, source != "default") if key.check is not None else None
    except ValueError as exc:
        why = str(exc)
    if why is None:
        return value
    # A secret's value is never shown, not even in an error: the reason follows the key's name.
    problems.append(f"{shown_as} {why}" if key.secret else f"{shown_as}{sep}{key.shown(raw)}: {why}")
    return None


def cross_checks(
    keys: Mapping[str, Key[Any]],
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
                problems.append(f"AWS_REGION is not set ({keys['AWS_REGION'].help}); ASG_NAME needs it")
            else:
                parse_one(keys["AWS_REGION"], values["AWS_REGION"], sources.get("AWS_REGION", ""), problems)
    api, worker = parsed.get("GH_API_PORT"), parsed.get("GH_WORKER_PORT")
    if api is not None and api == worker:
        problems.append(f"GH_API_PORT and GH_WORKER_PORT are both {api}: the api and the worker need their own ports")


def stray_file_keys(
    keys: Mapping[str, Key[Any]], path: Path | None, file_values: Mapping[str, str], environ: Mapping[str, str]
) -> list[str]:
    """Lines of the env file that nothing reads: a misspelt key would otherwise be ignored in silence."""
    import difflib

    notes: list[str] = []
    for name, value in file_values.items():
        if name in keys or environ.get(name) == value:  # the same value exported too (systemd EnvironmentFile)
            continue
        if name.startswith("AWS_") or name in PROCESS_SETTINGS:
            notes.append(f"{path}: {name} is ignored there: it is read from the process environment (export it)")
            continue
        close = difflib.get_close_matches(name, list(keys), n=1, cutoff=0.75)
        notes.append(
            f"{path}: {name} is not a ghdeploy key, ignored" + (f" (did you mean {close[0]}?)" if close else "")
        )
    return notes


def hint(env_file: Path | None, problems: list[str]) -> str:
    """What a ConfigError suggests: fix the flag, or where to set the keys."""
    if all(p.startswith("-") for p in problems):
        return "fix the value of the flag named above (see the command's --help)"
    where = f" (read {env_file})" if env_file else f" (no {DEFAULT_ENV_FILE} here)"
    return f"set them in {DEFAULT_ENV_FILE} or the environment{where}; {DEFAULT_ENV_FILE}.example documents every key"
