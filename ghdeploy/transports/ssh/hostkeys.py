"""Host keys: known_hosts files, the unknown-key policy and the changed-key message.

An unknown key is refused unless the operator said --accept-new-host-key; a changed key is
always refused with the exact `ssh-keygen -R` line to run once the change is understood.
"""

from __future__ import annotations

import functools
import os
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ghdeploy.errors import HostKeyError, SSHError
from ghdeploy.transports.ssh.route import DEFAULT_PORT, Endpoint, Route, hop_prefix
from ghdeploy.transports.ssh.settings import SSHSettings

if TYPE_CHECKING:
    import paramiko

# Appends to known_hosts from concurrent connects (a fleet preflight may connect in threads)
# must not interleave or record the same host twice.
_KNOWN_HOSTS_LOCK = threading.Lock()


def known_hosts_name(hostname: str, port: int) -> str:
    """The name OpenSSH (and paramiko) look a host up by in known_hosts."""
    return hostname if port == DEFAULT_PORT else f"[{hostname}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` exactly as `ssh-keygen -l` and the ssh client print it."""
    return str(key.fingerprint)


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    # Plain (unhashed) names: the operator can read and `ssh-keygen -R` them; OpenSSH and
    # paramiko read both forms.
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def known_hosts_files(settings: SSHSettings) -> list[Path]:
    files = [settings.known_hosts.expanduser()]
    default = Path("~/.ssh/known_hosts").expanduser()
    if default not in files:
        files.append(default)
    return files


def load_known_hosts(client: paramiko.SSHClient, settings: SSHSettings, label: str) -> None:
    """Load every known_hosts file ssh would read into the client; a broken line is an error.

    Marker lines are not paramiko's business (it reads `@revoked host type key` as a host
    named "@revoked" and fails on the key): `@revoked` keys are collected and dropped from
    what the client trusts, so the policy below refuses them as revoked; `@cert-authority`
    lines are skipped (paramiko cannot check host certificates) and named in the message of
    a host whose key is then unknown.
    """
    marked = read_marked(settings)
    for path in known_hosts_files(settings):
        try:
            load_plain_lines(client.get_host_keys(), path, set(marked.revoked))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise SSHError(
                label,
                f"cannot read known_hosts file {path}: {exc}",
                f"fix or remove the broken line in {path}",
            ) from exc


class Marked:
    """The marker lines of the known_hosts files: revoked keys (base64) and skipped CA lines."""

    def __init__(self) -> None:
        self.revoked: dict[str, Path] = {}
        self.cert_authority: list[str] = []  # "FILE:LINE" of each skipped @cert-authority line


def read_marked(settings: SSHSettings) -> Marked:
    marked = Marked()
    for path in known_hosts_files(settings):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "@revoked":
                marked.revoked.setdefault(fields[3], path)
            elif fields[:1] == ["@cert-authority"]:
                marked.cert_authority.append(f"{path}:{number}")
    return marked


def load_plain_lines(keys: paramiko.HostKeys, path: Path, revoked: set[str] | None = None) -> None:
    """paramiko's HostKeys.load, minus the marker lines (read_marked handles those) and any
    revoked key, so that a host offering one reaches the policy, which refuses it."""
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    with open(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line.startswith(("#", "@")):
                continue
            try:
                entry = HostKeyEntry.from_line(line, number)
            except InvalidHostKey as exc:
                raise ValueError(f"line {number}: {exc}") from exc
            if entry is not None and entry.key.get_base64() not in (revoked or set()):
                for name in entry.hostnames:
                    keys.add(name, entry.key.get_name(), entry.key)


def append_known_host(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append one OpenSSH-format line, creating the file (and a 0700 parent dir) if missing."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = known_hosts_line(name, key)
    with _KNOWN_HOSTS_LOCK:
        existing = path.read_bytes() if path.exists() else b""
        if line.encode() in existing:
            return
        if existing and not existing.endswith(b"\n"):
            line = "\n" + line
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a") as f:
            f.write(line)


def _stale_entry_file(files: list[Path], name: str) -> Path:
    """Which known_hosts file holds the entry that no longer matches (for the hint)."""
    import paramiko

    for path in files:
        if path.exists():
            keys = paramiko.HostKeys()
            load_plain_lines(keys, path)
            if keys.lookup(name) is not None:
                return path
    return files[0]


@functools.cache
def policy_class() -> Callable[[str, SSHSettings], paramiko.MissingHostKeyPolicy]:
    # Built on first use so that paramiko stays out of module import.
    import paramiko

    class RefuseOrRecordNew(paramiko.MissingHostKeyPolicy):
        """Unknown key: refuse, unless the operator said --accept-new-host-key.

        Never AutoAddPolicy/WarningPolicy: trusting whatever answers would let anyone on
        the path receive the registry token we send on stdin. A changed key never reaches
        this policy: paramiko raises BadHostKeyException for it.
        """

        def __init__(self, label: str, settings: SSHSettings) -> None:
            self.label = label
            self.settings = settings

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            known_hosts = self.settings.known_hosts.expanduser()
            marked = read_marked(self.settings)
            if key.get_base64() in marked.revoked:
                raise HostKeyError(
                    self.label,
                    f"host key for {hostname} is REVOKED: {key.get_name()} {fingerprint(key)} is marked "
                    f"@revoked in {marked.revoked[key.get_base64()]}",
                    "the host offers a key that was withdrawn: do not connect until the host has a new key",
                )
            if not self.settings.accept_new_host_key:
                skipped = ""
                if marked.cert_authority:
                    skipped = (
                        f"; @cert-authority line(s) at {', '.join(marked.cert_authority[:3])} were skipped: "
                        "ghdeploy does not check host certificates, list the host's own key"
                    )
                raise HostKeyError(
                    self.label,
                    f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} (not in {known_hosts})"
                    + skipped,
                    f"verify that {fingerprint(key)} is the host's key (on the host: "
                    "ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub; on EC2 the console's system "
                    "log shows it at first boot), then re-run with --accept-new-host-key",
                )
            append_known_host(known_hosts, hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)

    return RefuseOrRecordNew


def changed_key_error(
    exc: paramiko.BadHostKeyException, endpoint: Endpoint, route: Route, settings: SSHSettings
) -> HostKeyError:
    name = known_hosts_name(endpoint.hostname, endpoint.port)
    stale = _stale_entry_file(known_hosts_files(settings), name)
    return HostKeyError(
        route.target.label,
        f"{hop_prefix(endpoint, route)}host key for {name} has CHANGED: the server offers "
        f"{exc.key.get_name()} {fingerprint(exc.key)} but {stale} has "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}. Someone may be "
        "intercepting the connection, or the instance was replaced",
        f"if the host was rebuilt on purpose, run "
        f"`ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(stale))}`, "
        "verify the new key and re-run with --accept-new-host-key",
    )
