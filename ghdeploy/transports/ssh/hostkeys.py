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
    """Load every known_hosts file ssh would read into the client; a broken file is an error."""
    from paramiko.hostkeys import InvalidHostKey

    for path in known_hosts_files(settings):
        try:
            client.get_host_keys().load(str(path))
        except FileNotFoundError:
            continue
        except (OSError, InvalidHostKey) as exc:
            raise SSHError(
                label,
                f"cannot read known_hosts file {path}: {exc}",
                f"fix or remove the broken line in {path}",
            ) from exc


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
            keys.load(str(path))
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
            if not self.settings.accept_new_host_key:
                raise HostKeyError(
                    self.label,
                    f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} (not in {known_hosts})",
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
