"""Grammars of every value ghdeploy accepts (config keys and flags): parsers from text to a value.

A parser returns the value or raises ValueError("why"); the caller names the key or the flag.
Only the standard library: checking input must not import the network stack.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ghdeploy.hosts import Host, parse_host_list

# Every pattern is used with fullmatch (a `$` would let a trailing newline through) and re.ASCII
# (`\d`/`\w` would accept other scripts' digits and letters).
# docker's tag grammar: https://docs.docker.com/reference/cli/docker/image/tag/
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# registry host[:port] (ECR: 123456789012.dkr.ecr.us-east-1.amazonaws.com); never a leading '-'
REGISTRY_RE = re.compile(rf"(?P<host>{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>[0-9]{{1,5}}))?", re.ASCII)
# docker repository path components
REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", re.ASCII
)
REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
ASG_RE = re.compile(r"[A-Za-z0-9_+=,.@/-]{1,255}", re.ASCII)
# DynamoDB table names
TABLE_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
AGENT_MIN_INTERVAL = 5
USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
SHA_RE = re.compile(r"[0-9a-f]{7,40}", re.ASCII)
# docker's --platform: os[/arch[/variant]]
PLATFORM_RE = re.compile(r"[a-z0-9_]+(?:/[a-z0-9_]+(?:/[a-z0-9_.]+)?)?", re.ASCII)
_DIGITS_RE = re.compile(r"[0-9]{1,10}", re.ASCII)

COMPOSE_FILES = {"production": "docker-compose.prod.yml", "staging": "docker-compose.staging.yml"}


# --- parsers: str -> value, or ValueError("why") --------------------------------------------


def ascii_int(text: str) -> int:
    """A whole number in ASCII digits only (`int()` alone takes '¹', '٣', ' 3', '+3' and '3_0')."""
    if not _DIGITS_RE.fullmatch(text):
        raise ValueError("not a whole number")
    return int(text)


def integer(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    what = f"{low}-{high}{' ' + unit if unit else ''}"

    def parse(text: str) -> int:
        try:
            value = ascii_int(text)
        except ValueError:
            raise ValueError(f"not a whole number ({what})") from None
        if not low <= value <= high:
            raise ValueError(f"out of range ({what})")
        return value

    return parse


def seconds(low: int, high: int) -> Callable[[str], int]:
    return integer(low, high, "seconds")


def port(text: str) -> int:
    return integer(1, 65535)(text)


def pattern(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not regex.fullmatch(text):
            raise ValueError(f"not {what}")
        return text

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be {' or '.join(options)}")
        return text

    return parse


def registry_host(text: str) -> str:
    match = REGISTRY_RE.fullmatch(text)
    if not match or ("." not in match["host"] and match["host"] != "localhost" and not match["port"]):
        raise ValueError("not a registry host[:port] (like 123456789012.dkr.ecr.us-east-1.amazonaws.com)")
    if match["port"] and not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"port {match['port']} is out of range (1-65535)")
    return text


def docker_tag(text: str) -> str:
    if not text:
        raise ValueError("empty: name a tag")
    if not TAG_RE.fullmatch(text):
        raise ValueError("not a valid docker tag (letters, digits, '_', '.', '-' but not first; at most 128)")
    return text


def commit_sha(text: str) -> str:
    if not SHA_RE.fullmatch(text.lower()):
        raise ValueError("not a commit SHA (7 to 40 hex digits)")
    return text.lower()


def local_path(text: str) -> Path:
    if any(ord(c) < 32 for c in text):
        raise ValueError("contains a control character")
    return Path(os.path.expanduser(text))


def remote_dir(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    if any(ord(c) < 32 or c == "\x7f" for c in text):
        raise ValueError("contains a control character")
    if text.rstrip("/") == "":
        raise ValueError("must not be / itself")
    if ".." in text.split("/"):
        raise ValueError("must not contain '..'")
    return text


MIN_SECRET = 16


def shared_secret(text: str) -> str:
    """A signing secret or bearer token (secret keys' reasons read after the key name: no value shown)."""
    if len(text.strip()) < MIN_SECRET:
        raise ValueError(f"is shorter than {MIN_SECRET} characters (use e.g. `openssl rand -hex 32`)")
    return text.strip()


def database_url(text: str) -> str:
    if not text.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
        raise ValueError("is not a sqlite:/// or postgresql:// URL")
    return text


def http_url(text: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        raise ValueError("not an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError("not an http:// or https:// URL")
    return text


def host_list(text: str) -> tuple[Host, ...]:
    return tuple(parse_host_list(text))


# --- environment-dependent checks (files), run after parsing -----------------------------------


def readable_file(path: Path, explicit: bool) -> str | None:
    if path.is_dir():
        return "is a directory, not a key file"
    if not path.is_file():
        return "no such file"
    if not os.access(path, os.R_OK):
        return "not readable"
    return None


def not_a_directory(path: Path, explicit: bool) -> str | None:
    return "is a directory, not a file" if path.is_dir() else None


def file_if_explicit(path: Path, explicit: bool) -> str | None:
    """The default ~/.ssh/config may be absent; one the operator named must be there."""
    if path.is_dir():
        return "is a directory, not a file"
    if explicit and not path.is_file():
        return "no such file (set it only to a config that exists)"
    return None


# --- flags -------------------------------------------------------------------------------------


def count(low: int, high: int) -> Callable[[str], int]:
    """--batch, -n: a whole number in ASCII digits (click's int() would take '٣')."""
    return integer(low, high)


def platform(text: str) -> str:
    if not PLATFORM_RE.fullmatch(text):
        raise ValueError("not a platform like linux/amd64 or linux/arm64/v8")
    return text


def platforms(text: str) -> str:
    """GH_PLATFORM: one platform, or several comma-separated (a multi-arch build)."""
    if not all(PLATFORM_RE.fullmatch(part) and "/" in part for part in text.split(",")):
        raise ValueError("not a platform like linux/amd64, or a comma-separated list of them")
    return text


def message(text: str) -> str:
    """-m: kept in the lock and history and shown to other operators, so no terminal control codes."""
    if not text.strip():
        raise ValueError("empty (leave -m out instead)")
    if any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ValueError("contains a control character")
    if len(text) > 2000:
        raise ValueError("longer than 2000 characters")
    return text


def host_name(text: str) -> str:
    """--host: a configured host as [user@]host[:port] or its bare name."""
    from ghdeploy.hosts import parse_host

    parse_host(text)  # raises ValueError with the reason
    return text.strip()


def listen_address(text: str) -> str:
    """--listen HOST:PORT ([v6]:PORT for IPv6)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host.strip("[]"):
        raise ValueError("not HOST:PORT (like 127.0.0.1:8080)")
    if any(c.isspace() for c in host):
        raise ValueError("the host contains a space")
    integer(1, 65535)(port_text)
    return text
