"""Where to connect and through which jump hosts: ssh config resolution and ProxyJump.

Pure functions of the ssh config text and the host spec (unit-tested offline); paramiko is
imported only to parse an ssh config file.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import SSHError
from ghdeploy.hosts import Host, parse_host

if TYPE_CHECKING:
    import paramiko

DEFAULT_PORT = 22
# OpenSSH stops expanding ProxyJump recursion long before this; it only guards against loops.
_MAX_JUMPS = 8


@dataclass(frozen=True)
class Endpoint:
    """One SSH hop after ssh-config resolution: where to connect and as whom."""

    hostname: str
    port: int
    user: str
    key_files: tuple[Path, ...] = ()

    @property
    def label(self) -> str:
        return Host(self.hostname, self.user, None if self.port == DEFAULT_PORT else self.port).label


@dataclass(frozen=True)
class Route:
    """The target and the ProxyJump hops in front of it, first hop first."""

    target: Endpoint
    jumps: tuple[Endpoint, ...] = field(default=())


def local_user() -> str:
    """The login name ssh would use when nothing names one."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No USER/LOGNAME and no passwd entry (some containers): ssh would fail too.
        return "root"


def load_ssh_config(path: Path | None, host_label: str) -> paramiko.SSHConfig | None:
    if path is None:
        return None
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(str(path.expanduser()))
    except FileNotFoundError:
        # A missing ~/.ssh/config is normal; ssh does not complain either.
        return None
    except (OSError, paramiko.ConfigParseError, ValueError) as exc:
        raise SSHError(
            host_label,
            f"cannot read ssh config {path}: {exc}",
            f"fix or remove {path}",
        ) from exc


def parse_jump_list(value: str) -> list[Host]:
    """ProxyJump's value: `[user@]host[:port]` or `ssh://[user@]host[:port]`, comma-separated."""
    hops: list[Host] = []
    for part in value.split(","):
        spec = part.strip()
        if spec.startswith("ssh://"):
            spec = spec[len("ssh://") :].rstrip("/")
        if spec:
            hops.append(parse_host(spec))
    return hops


def _lookup(config: paramiko.SSHConfig | None, name: str) -> dict[str, Any]:
    if config is None:
        return {}
    return dict(config.lookup(name))


def _endpoint(
    host: Host,
    options: dict[str, Any],
    key_file: Path | None,
    default_user: str,
) -> Endpoint:
    # What the operator typed wins over ssh config, which wins over the defaults: the same
    # precedence as `ssh -p PORT user@host`.
    hostname = str(options.get("hostname") or host.hostname)
    user = host.user or options.get("user") or default_user
    try:
        port = host.port or int(options.get("port", DEFAULT_PORT))
    except ValueError:
        raise SSHError(
            host.label, f"bad Port {options.get('port')!r} in ssh config", "fix Port in the ssh config"
        ) from None
    keys: list[Path] = [key_file.expanduser()] if key_file else []
    # Like `ssh -i KEY`, EC2_KEY is tried first and the config's IdentityFile(s) after it.
    # Missing IdentityFile entries are skipped silently, as ssh does (a `Host *` default
    # often names keys that do not exist).
    for name in options.get("identityfile", []):
        path = Path(os.path.expanduser(name))
        if path not in keys and path.exists():
            keys.append(path)
    return Endpoint(hostname=hostname, port=port, user=str(user), key_files=tuple(keys))


def resolve_route(
    host: Host,
    config: paramiko.SSHConfig | None,
    key_file: Path | None,
    default_user: str | None = None,
) -> Route:
    """Resolve HostName/User/Port/IdentityFile/ProxyJump for `host` and its jump hosts.

    As in OpenSSH, `ProxyJump a,b` means: connect to a (applying a's own config, including
    a's own ProxyJump), then through a to b (b's ProxyJump is ignored), then through b to
    the target.
    """
    user = default_user or local_user()
    options = _lookup(config, host.hostname)
    target = _endpoint(host, options, key_file, user)
    jumps = _jump_chain(str(options.get("proxyjump", "")), config, key_file, user, host.label, 0)
    return Route(target=target, jumps=tuple(jumps))


def _jump_chain(
    value: str,
    config: paramiko.SSHConfig | None,
    key_file: Path | None,
    user: str,
    label: str,
    depth: int,
) -> list[Endpoint]:
    if not value or value.strip().lower() == "none":
        return []
    try:
        hops = parse_jump_list(value)
    except ValueError as exc:
        raise SSHError(
            label, f"bad ProxyJump {value!r} in ssh config: {exc}", "fix ProxyJump in the ssh config"
        ) from exc
    chain: list[Endpoint] = []
    for index, hop in enumerate(hops):
        options = _lookup(config, hop.hostname)
        if index == 0:
            if depth >= _MAX_JUMPS:
                raise SSHError(
                    label,
                    f"ProxyJump chain longer than {_MAX_JUMPS} hops (a loop?)",
                    "check the ProxyJump entries in the ssh config",
                )
            first_jumps = str(options.get("proxyjump", ""))
            chain.extend(_jump_chain(first_jumps, config, key_file, user, label, depth + 1))
        chain.append(_endpoint(hop, options, key_file, user))
    return chain


def hop_prefix(endpoint: Endpoint, route: Route) -> str:
    return "" if endpoint == route.target else f"jump host {endpoint.label}: "


def keys_text(endpoint: Endpoint) -> str:
    if endpoint.key_files:
        return ", ".join(str(k) for k in endpoint.key_files)
    return "ssh-agent / ~/.ssh/id_* (no EC2_KEY set)"
