"""The one seam to paramiko: connect to a host, run argv lists, tunnel HTTP to its localhost.

A host needs nothing but sshd (see DESIGN.md): commands are argv lists quoted with
`shlex.join`, secrets travel on stdin, and HTTP to the host's own `localhost:3100` goes
through a paramiko `direct-tcpip` channel, so neither curl on the host nor a local
listening port is needed.

paramiko, httpx and httpcore are imported inside functions only: `ghdeploy --help` loads
this module's names (through the CLI's imports) and must stay as cheap as `import typer`.
Every third-party exception is translated here into SSHError / HostKeyError /
RemoteCommandError, whose message names the host and whose hint says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import getpass
import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import GhdeployError, HostKeyError, RemoteCommandError, SSHError
from ghdeploy.hosts import Host, parse_host
from ghdeploy.transports.base import CommandResult

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    import httpcore
    import httpx
    import paramiko

DEFAULT_PORT = 22
# OpenSSH stops expanding ProxyJump recursion long before this; it only guards against loops.
_MAX_JUMPS = 8
_READ_CHUNK = 65536

# Appends to known_hosts from concurrent connects (a fleet preflight may connect in threads)
# must not interleave or record the same host twice.
_KNOWN_HOSTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SSHSettings:
    key_file: Path | None  # EC2_KEY; None -> IdentityFile from ssh config / paramiko defaults
    known_hosts: Path  # SSH_KNOWN_HOSTS; ~/.ssh/known_hosts is read too when different
    accept_new_host_key: bool = False  # the only way an unknown key is ever accepted
    ssh_config: Path | None = None  # an OpenSSH client config, e.g. ~/.ssh/config
    connect_timeout: float = 10.0
    keepalive: int = 15


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


# ---------------------------------------------------------------------------------------
# Pure helpers: naming, ssh config resolution, error translation (unit-tested offline)
# ---------------------------------------------------------------------------------------


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


def _hop_prefix(endpoint: Endpoint, route: Route) -> str:
    return "" if endpoint == route.target else f"jump host {endpoint.label}: "


def _keys_text(endpoint: Endpoint) -> str:
    if endpoint.key_files:
        return ", ".join(str(k) for k in endpoint.key_files)
    return "ssh-agent / ~/.ssh/id_* (no EC2_KEY set)"


def translate_connect_error(exc: BaseException, endpoint: Endpoint, route: Route, settings: SSHSettings) -> SSHError:
    """One clear line (and a hint) for whatever paramiko or the socket layer raised."""
    import paramiko

    label = route.target.label
    prefix = _hop_prefix(endpoint, route)
    where = f"{endpoint.hostname}:{endpoint.port}"
    network_hint = f"check the address, the security group (inbound TCP {endpoint.port} from your IP) and your VPN"
    if isinstance(exc, socket.gaierror):
        return SSHError(
            label,
            f"{prefix}cannot resolve host name {endpoint.hostname!r} ({exc.strerror or exc})",
            "check the host name in EC2_HOST (or HostName in the ssh config) and your DNS/VPN",
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        if codes and codes <= {errno.ECONNREFUSED}:
            return SSHError(
                label,
                f"{prefix}connection refused by {where}",
                f"is sshd running on the host, and is {endpoint.port} the right port (EC2_HOST=user@host:port)?",
            )
        return SSHError(label, f"{prefix}{where} is unreachable (no route to host)", network_hint)
    if isinstance(exc, ConnectionRefusedError):
        return SSHError(
            label,
            f"{prefix}connection refused by {where}",
            f"is sshd running on the host, and is {endpoint.port} the right port?",
        )
    if isinstance(exc, TimeoutError):
        return SSHError(
            label,
            f"{prefix}no answer from {where} within {settings.connect_timeout:g} s",
            network_hint,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return SSHError(label, f"{prefix}{where} is unreachable ({exc.strerror})", network_hint)
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(exc.allowed_types) or "none"
        return SSHError(
            label,
            f"{prefix}{where} does not accept public-key login for user {endpoint.user!r} (it allows: {allowed})",
            "ghdeploy only logs in with a key: check the user name in EC2_HOST",
        )
    if isinstance(exc, paramiko.AuthenticationException) or (
        isinstance(exc, paramiko.SSHException) and "No authentication methods" in str(exc)
    ):
        return SSHError(
            label,
            f"{prefix}authentication failed for user {endpoint.user!r} with key {_keys_text(endpoint)}",
            "check that EC2_KEY is the instance's key pair and the user name "
            "(ubuntu on Ubuntu AMIs, ec2-user on Amazon Linux): EC2_HOST=user@host",
        )
    if isinstance(exc, paramiko.ChannelException):
        # Raised when a jump host could not open the TCP connection to the next hop; sshd
        # reports refused, unreachable and timed out alike as 'Connect failed'.
        return SSHError(
            label,
            f"{prefix}could not connect onward to the next hop ({exc.text or exc})",
            "check that the next host's address and port are right as seen from the jump host "
            "and that its sshd is running",
        )
    if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
        if isinstance(exc.__context__, EOFError):
            # Something answered and hung up, e.g. an HTTP server or a proxy on that port.
            return SSHError(
                label,
                f"{prefix}{where} answered but is not an SSH server (it closed without an SSH banner)",
                "is that the SSH port, and the right address?",
            )
        return SSHError(
            label,
            f"{prefix}{where} accepted the connection but sent no SSH banner within {settings.connect_timeout:g} s",
            "is that the SSH port? The host may also be overloaded or still booting: retry",
        )
    if isinstance(exc, EOFError | ConnectionResetError):
        return SSHError(
            label,
            f"{prefix}{where} closed the connection during the SSH handshake",
            "sshd may be refusing new connections (MaxStartups, fail2ban) or this is not an SSH port",
        )
    if isinstance(exc, paramiko.SSHException | OSError):
        return SSHError(label, f"{prefix}SSH connection to {where} failed: {exc}", "re-run with -v")
    return SSHError(label, f"{prefix}SSH connection to {where} failed: {exc!r}", "re-run with -v")


# ---------------------------------------------------------------------------------------
# Keys and known_hosts
# ---------------------------------------------------------------------------------------


def load_private_key(path: Path, endpoint: Endpoint, route: Route) -> paramiko.PKey:
    """Load a key file ourselves so a bad one fails with a clear reason, before any network."""
    import paramiko

    label = route.target.label
    prefix = _hop_prefix(endpoint, route)
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError as exc:
        raise SSHError(label, f"{prefix}key file {path} does not exist", "check EC2_KEY (or IdentityFile)") from exc
    except PermissionError as exc:
        raise SSHError(
            label,
            f"{prefix}key file {path} is not readable by this user",
            f"check the file's owner and mode (chmod 600 {path})",
        ) from exc
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        # Encrypted keys in the OpenSSH format surface as cryptography's TypeError ("Key is
        # password-protected"), PEM ones as paramiko's PasswordRequiredException.
        if isinstance(exc, TypeError) and "password" not in str(exc).lower():
            raise SSHError(
                label,
                f"{prefix}key file {path} is not a private key paramiko can read ({exc})",
                "EC2_KEY must point to the private key (.pem / id_*), not the .pub file",
            ) from exc
        raise SSHError(
            label,
            f"{prefix}key file {path} is encrypted and ghdeploy never prompts for a passphrase",
            f"use an unencrypted copy (ssh-keygen -p -N '' -f COPY) for EC2_KEY, or load {path}"
            " into ssh-agent and unset EC2_KEY",
        ) from exc
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise SSHError(
            label,
            f"{prefix}key file {path} is not a private key paramiko can read ({exc})",
            "EC2_KEY must point to the private key (.pem / id_*), not the .pub file",
        ) from exc


def _known_hosts_files(settings: SSHSettings) -> list[Path]:
    files = [settings.known_hosts.expanduser()]
    default = Path("~/.ssh/known_hosts").expanduser()
    if default not in files:
        files.append(default)
    return files


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
def _policy_class() -> Callable[[str, SSHSettings], paramiko.MissingHostKeyPolicy]:
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


def _changed_key_error(
    exc: paramiko.BadHostKeyException, endpoint: Endpoint, route: Route, settings: SSHSettings
) -> HostKeyError:
    name = known_hosts_name(endpoint.hostname, endpoint.port)
    stale = _stale_entry_file(_known_hosts_files(settings), name)
    return HostKeyError(
        route.target.label,
        f"{_hop_prefix(endpoint, route)}host key for {name} has CHANGED: the server offers "
        f"{exc.key.get_name()} {fingerprint(exc.key)} but {stale} has "
        f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}. Someone may be "
        "intercepting the connection, or the instance was replaced",
        f"if the host was rebuilt on purpose, run "
        f"`ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(stale))}`, "
        "verify the new key and re-run with --accept-new-host-key",
    )


# ---------------------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------------------


def _quiet_paramiko_logging() -> None:
    # paramiko logs handshake failures from its transport thread at ERROR, with tracebacks;
    # with no handler configured Python's last-resort handler would print them on stderr
    # next to our one-line error. A NullHandler stops that yet keeps propagation to
    # whatever handlers the CLI installs for -v.
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _open_hop(
    endpoint: Endpoint,
    route: Route,
    settings: SSHSettings,
    sock: paramiko.Channel | None,
) -> paramiko.SSHClient:
    import paramiko
    from paramiko.hostkeys import InvalidHostKey

    keys = [load_private_key(path, endpoint, route) for path in endpoint.key_files]
    client = paramiko.SSHClient()
    for path in _known_hosts_files(settings):
        try:
            client.get_host_keys().load(str(path))
        except FileNotFoundError:
            continue
        except (OSError, InvalidHostKey) as exc:
            client.close()
            raise SSHError(
                route.target.label,
                f"cannot read known_hosts file {path}: {exc}",
                f"fix or remove the broken line in {path}",
            ) from exc
    client.set_missing_host_key_policy(_policy_class()(route.target.label, settings))
    timeout = settings.connect_timeout
    # paramiko takes a list here although its stubs say str.
    more_keys: Any = [str(p) for p in endpoint.key_files[1:]] or None
    try:
        client.connect(
            hostname=endpoint.hostname,
            port=endpoint.port,
            username=endpoint.user,
            pkey=keys[0] if keys else None,
            # The remaining keys are re-read by paramiko; they were validated above.
            key_filename=more_keys,
            # Never prompt and never wander: with a key configured use only it; without one
            # fall back to what plain `ssh` would use (agent, ~/.ssh/id_*).
            allow_agent=not keys,
            look_for_keys=not keys,
            sock=sock,
            timeout=timeout,  # TCP connect and the key exchange
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except GhdeployError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _changed_key_error(exc, endpoint, route, settings) from exc
    except Exception as exc:
        client.close()
        raise translate_connect_error(exc, endpoint, route, settings) from exc
    transport = client.get_transport()
    assert transport is not None  # connect() succeeded
    transport.set_keepalive(settings.keepalive)
    if sock is None:
        # Only the first hop has a real TCP socket (later hops ride channels inside it).
        # Without TCP_NODELAY, Nagle holds a small packet (a channel open, an HTTP request)
        # until the previous one is ACKed, and delayed ACKs add ~40 ms to every /health poll.
        with contextlib.suppress(OSError, AttributeError):
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    return client


def _forward(
    client: paramiko.SSHClient,
    hop: Endpoint,
    nxt: Endpoint,
    route: Route,
    settings: SSHSettings,
) -> paramiko.Channel:
    """A direct-tcpip channel from a jump host to the next hop's sshd: the next hop's socket."""
    transport = client.get_transport()
    assert transport is not None
    try:
        return transport.open_channel(
            "direct-tcpip",
            (nxt.hostname, nxt.port),
            ("127.0.0.1", 0),
            timeout=settings.connect_timeout,
        )
    except Exception as exc:
        import paramiko

        if isinstance(exc, paramiko.ChannelException):
            raise SSHError(
                route.target.label,
                f"jump host {hop.label} could not connect to {nxt.hostname}:{nxt.port} ({exc.text})",
                "check the address and port as seen from the jump host, and that sshd runs there",
            ) from exc
        raise translate_connect_error(exc, hop, route, settings) from exc


def connect(host: Host, settings: SSHSettings) -> Connection:
    """Open an authenticated SSH connection to `host` (through its ProxyJump hops, if any).

    Raises HostKeyError for an unknown (unless accept_new_host_key) or changed host key and
    SSHError for everything else that stops the connection.
    """
    _quiet_paramiko_logging()
    config = load_ssh_config(settings.ssh_config, host.label)
    route = resolve_route(host, config, settings.key_file)
    hops = [*route.jumps, route.target]
    clients: list[paramiko.SSHClient] = []
    sock: paramiko.Channel | None = None
    try:
        for index, hop in enumerate(hops):
            client = _open_hop(hop, route, settings, sock)
            clients.append(client)
            if index + 1 < len(hops):
                sock = _forward(client, hop, hops[index + 1], route, settings)
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return Connection(host, route, clients, settings)


# ---------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------


class Connection:
    """An authenticated SSH connection to one host. Thread-safe: channels are independent."""

    def __init__(
        self,
        host: Host,
        route: Route,
        clients: list[paramiko.SSHClient],
        settings: SSHSettings,
    ) -> None:
        self.host = host
        self.route = route
        self.settings = settings
        # Jump clients first, the target last; closed in reverse.
        self._clients = clients
        transport = clients[-1].get_transport()
        assert transport is not None
        self._transport: paramiko.Transport = transport

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.host.label}>"

    def close(self) -> None:
        for client in reversed(self._clients):
            client.close()

    def _lost(self, exc: BaseException, what: str) -> SSHError:
        return SSHError(
            self.host.label,
            f"SSH connection lost while {what}: {exc}",
            "check that the host is up and reachable, then re-run",
        )

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv on the host. stdout/stderr are drained concurrently (no deadlock on big
        output); stdin is written then closed, so secrets never appear in argv or `ps`."""
        import paramiko

        command = shlex.join(argv)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            chan = self._transport.open_session(timeout=self._open_timeout(deadline))
            if chan is None:  # only in the stubs' types; paramiko raises instead
                raise paramiko.SSHException("could not open a session channel")
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc, f"starting `{command}`") from exc
        try:
            out: list[bytes] = []
            err: list[bytes] = []
            workers = [
                _thread(_drain, chan.recv, out),
                _thread(_drain, chan.recv_stderr, err),
            ]
            if stdin:
                workers.append(_thread(_feed, chan, stdin))
            else:
                # EOF right away: a command that reads stdin must not wait for us forever.
                chan.shutdown_write()
            for worker in workers:
                worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    raise SSHError(
                        self.host.label,
                        f"`{command}` did not finish within {timeout:g} s",
                        "the command may still be running on the host; check it there, or raise the timeout",
                    )
            # Both streams hit EOF; the exit status arrives just before the channel closes.
            if not chan.status_event.wait(None if deadline is None else max(0.0, deadline - time.monotonic()) + 1.0):
                raise SSHError(
                    self.host.label,
                    f"`{command}` closed its output but reported no exit status",
                    "re-run; if it persists, check sshd on the host",
                )
            rc = chan.exit_status
            if rc == -1 and not self._transport.is_active():
                # The channel closed because the connection died, not because the command
                # ended (a command killed by a signal also reports -1, but over a live link).
                raise self._lost(EOFError("connection closed"), f"running `{command}`")
        finally:
            # Closing also wakes any reader still blocked (on timeout) so its thread ends.
            chan.close()
        return CommandResult(
            rc=rc,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
        )

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Like run, but a non-zero exit status raises RemoteCommandError."""
        result = self.run(argv, stdin=stdin, timeout=timeout)
        if result.rc != 0:
            raise RemoteCommandError(self.host.label, shlex.join(argv), result.rc, result.stderr)
        return result

    def _open_timeout(self, deadline: float | None) -> float:
        # Opening a channel is one round trip: if it takes longer than a connect may, the
        # connection is as good as dead.
        limit = self.settings.connect_timeout
        if deadline is not None:
            limit = min(limit, deadline - time.monotonic())
        return max(0.1, limit)

    def http_client(self, timeout: float = 5.0) -> httpx.Client:
        """An httpx.Client whose connections are direct-tcpip channels from the host itself.

        `client.get("http://localhost:3100/health")` reaches the host's own localhost:3100. A
        closed remote port raises httpx.ConnectError. Close the client when done (its
        channels close with it; the SSH connection stays open).
        """
        import httpcore
        import httpx

        backend = _backend_class()(self._transport, self.host.label)
        pool = httpcore.ConnectionPool(
            network_backend=backend,
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
        )
        # verify=False only spares building a CA-bundle SSL context that the swapped-in pool
        # never uses: https is refused by the tunnel (the SSH channel is already encrypted).
        transport = httpx.HTTPTransport(verify=False, trust_env=False)
        transport._pool.close()
        # httpx has no public hook for a network backend; HTTPTransport delegates everything
        # (requests, exception mapping, close) to `_pool`, so swapping it is the smallest
        # seam. If httpx ever renames it, this fails loudly in the tests, not silently.
        transport._pool = pool
        return httpx.Client(transport=transport, timeout=timeout, trust_env=False)


def _thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    # Daemon: a reader stuck on a dead connection must not keep the CLI from exiting.
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _drain(read: Callable[[int], bytes], sink: list[bytes]) -> None:
    try:
        while data := read(_READ_CHUNK):
            sink.append(data)
    except (OSError, EOFError):
        # The channel was closed under us (timeout or lost connection); the caller reports.
        return


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    try:
        chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError):
        # The command exited without reading all of stdin; its rc and stderr tell why.
        return


# ---------------------------------------------------------------------------------------
# HTTP through the tunnel: an httpcore network backend over direct-tcpip channels
# ---------------------------------------------------------------------------------------


@functools.cache
def _backend_class() -> Callable[[paramiko.Transport, str], httpcore.NetworkBackend]:
    # Built on first use so httpcore stays out of module import (subclassing its bases needs
    # the import).
    import httpcore
    import paramiko

    class ChannelStream(httpcore.NetworkStream):
        def __init__(self, chan: paramiko.Channel, address: tuple[str, int]) -> None:
            self._chan = chan
            self._address = address

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            self._chan.settimeout(timeout)
            try:
                return self._chan.recv(max_bytes)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
            except (OSError, EOFError) as exc:
                raise httpcore.ReadError(str(exc)) from exc

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            if not buffer:
                return
            self._chan.settimeout(timeout)
            try:
                self._chan.sendall(buffer)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
            except (OSError, EOFError) as exc:
                raise httpcore.WriteError(str(exc)) from exc

        def close(self) -> None:
            self._chan.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            raise httpcore.ConnectError(
                "https through the SSH tunnel is not supported; use http:// (the SSH channel is already encrypted)"
            )

        def get_extra_info(self, info: str) -> Any:
            if info == "is_readable":
                # httpcore asks this of idle keep-alive connections: readable means the
                # server closed (or sent junk), so the connection must not be reused.
                chan = self._chan
                return chan.closed or chan.eof_received or chan.recv_ready()
            if info == "server_addr":
                return self._address
            return None

    class TunnelBackend(httpcore.NetworkBackend):
        def __init__(self, transport: paramiko.Transport, label: str) -> None:
            self._transport = transport
            self._label = label

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            # The channel's destination is resolved and connected BY THE REMOTE sshd, so
            # "localhost" here is the host's own loopback. One round trip, no new TCP/SSH
            # handshake: cheap enough to poll /health every 100 ms.
            try:
                chan = self._transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                # Code 2 'Connect failed': nothing listens on host:port (as seen remotely).
                raise httpcore.ConnectError(
                    f"{self._label}: cannot connect to {host}:{port} on the host ({exc.text})"
                ) from exc
            except paramiko.SSHException as exc:
                if "Timeout" in str(exc):
                    raise httpcore.ConnectTimeout(
                        f"{self._label}: opening a tunnel to {host}:{port} timed out"
                    ) from exc
                raise httpcore.ConnectError(
                    f"{self._label}: SSH connection unusable for a tunnel to {host}:{port} ({exc})"
                ) from exc
            except (OSError, EOFError) as exc:
                raise httpcore.ConnectError(
                    f"{self._label}: SSH connection lost opening a tunnel to {host}:{port} ({exc})"
                ) from exc
            return ChannelStream(chan, (host, port))

        def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            raise httpcore.ConnectError("unix sockets are not tunnelled")

        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    return TunnelBackend
