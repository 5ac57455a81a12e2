"""Host addresses: parsing `user@host[:port]` lists and discovering Auto Scaling Group members."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class Host:
    """One target host as the operator named it. user/port None mean 'ask ~/.ssh/config, then defaults'."""

    hostname: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        text = self.hostname if ":" not in self.hostname else f"[{self.hostname}]"
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text

    def __str__(self) -> str:
        return self.label


def parse_host(spec: str) -> Host:
    """Parse `[user@]host[:port]` (IPv6 as `[addr]:port`). Raises ValueError with a reason."""
    text = spec.strip()
    if not text:
        raise ValueError("empty host")
    user: str | None = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
        if not _USER_RE.match(user):
            raise ValueError(f"bad user name {user!r}")
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 address")
        hostname, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after address")
            port = _parse_port(rest[1:])
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise ValueError(f"bad IPv6 address {hostname!r}") from None
        return Host(hostname=hostname, user=user, port=port)
    if text.count(":") == 1:
        text, port_text = text.split(":")
        port = _parse_port(port_text)
    elif text.count(":") > 1:
        raise ValueError("IPv6 addresses must be written as [addr] or [addr]:port")
    if not _HOSTNAME_RE.match(text):
        raise ValueError(f"bad host name {text!r}")
    return Host(hostname=text, user=user, port=port)


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port {text!r} (1-65535)")
    return int(text)


def parse_host_list(value: str) -> list[Host]:
    """A comma-separated list, in deploy order. Duplicates are refused."""
    hosts: list[Host] = []
    for part in value.split(","):
        if not part.strip():
            continue
        host = parse_host(part)
        if host in hosts:
            raise ValueError(f"host {host.label} listed twice")
        hosts.append(host)
    if not hosts:
        raise ValueError("no host given")
    return hosts
