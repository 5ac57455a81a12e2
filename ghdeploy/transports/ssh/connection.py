"""Open an authenticated SSH connection (through ProxyJump hops) and use it.

paramiko is imported inside functions only: `ghdeploy --help` loads this module's names and
must stay as cheap as `import typer`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import GhdeployError, SSHError
from ghdeploy.hosts import Host
from ghdeploy.transports.base import Closing, checked
from ghdeploy.transports.ssh import runner
from ghdeploy.transports.ssh.diagnose import load_private_key, translate_connect_error
from ghdeploy.transports.ssh.hostkeys import changed_key_error, load_known_hosts, policy_class
from ghdeploy.transports.ssh.importing import import_paramiko
from ghdeploy.transports.ssh.jumps import SharedJumps
from ghdeploy.transports.ssh.route import Endpoint, Route, load_ssh_config, resolve_route
from ghdeploy.transports.ssh.runner import CommandResult
from ghdeploy.transports.ssh.settings import SSHSettings
from ghdeploy.transports.tcp import tcp_connect

if TYPE_CHECKING:
    import paramiko

    from ghdeploy.docker_api import DockerAPI
    from ghdeploy.transports import http11
    from ghdeploy.transports.ssh.stream import RemoteStream


def _quiet_paramiko_logging() -> None:
    # paramiko logs handshake failures from its transport thread at ERROR, with tracebacks;
    # with no handler configured Python's last-resort handler would print them on stderr
    # next to our one-line error. A NullHandler stops that (ghdeploy installs no logging
    # handlers: -v shows the commands through the reporter instead).
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def _close(client: paramiko.SSHClient, sock: socket.socket | paramiko.Channel) -> None:
    client.close()
    with contextlib.suppress(OSError):
        sock.close()


def _open_hop(
    endpoint: Endpoint,
    route: Route,
    settings: SSHSettings,
    sock: paramiko.Channel | socket.socket | OSError | None,
) -> paramiko.SSHClient:
    import paramiko

    keys = [load_private_key(path, endpoint, route) for path in endpoint.key_files]
    client = paramiko.SSHClient()
    try:
        load_known_hosts(client, settings, route.target.label)
    except SSHError:
        client.close()
        raise
    client.set_missing_host_key_policy(policy_class()(route.target.label, settings))
    timeout = settings.connect_timeout
    if isinstance(sock, OSError):
        # The TCP connect made ahead failed (preconnect): report it as this one would have,
        # without a second wait for the same unreachable host.
        client.close()
        raise translate_connect_error(sock, endpoint, route, settings) from sock
    if sock is None:
        # Only the first hop has a real TCP socket (later hops ride channels inside it).
        try:
            sock = tcp_connect(endpoint.hostname, endpoint.port, timeout)
        except OSError as exc:
            client.close()
            raise translate_connect_error(exc, endpoint, route, settings) from exc
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
            timeout=timeout,  # the key exchange
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except GhdeployError:
        _close(client, sock)
        raise
    except paramiko.BadHostKeyException as exc:
        _close(client, sock)
        raise changed_key_error(exc, endpoint, route, settings) from exc
    except Exception as exc:
        _close(client, sock)
        raise translate_connect_error(exc, endpoint, route, settings) from exc
    transport = client.get_transport()
    assert transport is not None  # connect() succeeded
    transport.set_keepalive(settings.keepalive)
    # Every hop, jump hosts too: a dead shared jump must not be handed to the next connect.
    _watch_peer(transport, settings.keepalive, settings.dead_peer)
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


# Every connect() in this process shares jump-host connections (see jumps.py).
JUMPS: SharedJumps[paramiko.SSHClient] = SharedJumps()


def connect(host: Host, settings: SSHSettings, sock: socket.socket | OSError | None = None) -> Connection:
    """Open an authenticated SSH connection to `host` (through its ProxyJump hops, if any).

    Jump hops are shared with every other connection through the same hops and settings: a
    fleet behind one bastion holds one connection to it. Raises HostKeyError for an unknown
    (unless accept_new_host_key) or changed host key and SSHError for everything else that stops
    the connection. `sock`: a TCP connection to `host` as written (hostname, port or 22), opened
    ahead (preconnect), or why it failed; used when the route goes straight there (a failure is
    then this connect's own), dropped otherwise.
    """
    import_paramiko(settings.ssh_config)
    _quiet_paramiko_logging()
    config = load_ssh_config(settings.ssh_config, host.label)
    route = resolve_route(host, config, settings.key_file)
    if sock is not None and (
        route.jumps or (route.target.hostname, route.target.port) != (host.hostname, host.port or 22)
    ):
        if not isinstance(sock, OSError):
            sock.close()  # opened to the address as written, but the ssh config sends it elsewhere
        sock = None
    leases: list[Hashable] = []
    previous: tuple[paramiko.SSHClient, Endpoint] | None = None

    def open_hop(hop: Endpoint, before: tuple[paramiko.SSHClient, Endpoint] | None) -> paramiko.SSHClient:
        # The channel through the previous hop is opened only when this hop really needs a
        # new connection: a shared jump that is already up needs none.
        if before is not None:
            return _open_hop(hop, route, settings, _forward(before[0], before[1], hop, route, settings))
        return _open_hop(hop, route, settings, sock if hop == route.target else None)

    try:
        for index, jump in enumerate(route.jumps):
            key = (settings, route.jumps[: index + 1])
            client = JUMPS.acquire(key, functools.partial(open_hop, jump, previous))
            leases.append(key)
            previous = (client, jump)
        target = open_hop(route.target, previous)
    except BaseException:
        for lease in reversed(leases):
            JUMPS.release(lease)
        raise
    return Connection(host, route, [target], settings, release=[functools.partial(JUMPS.release, k) for k in leases])


def _watch_peer(transport: paramiko.Transport, every: float, limit: float) -> None:
    """Close the transport when the server stops answering: a half-open TCP link (Wi-Fi gone,
    VPN flap) would otherwise hang a command for the kernel's ~15 minutes of retransmissions.

    Every `every` s a global request that the server must answer goes out (OpenSSH answers an
    unknown one with a failure, as for its own ClientAlive probes); with no answer within `limit`
    s the transport is closed, so every command and tunnel on it fails at once.
    """

    def probe() -> None:
        with contextlib.suppress(Exception):  # a failing probe is what the watchdog looks for
            transport.global_request("keepalive@openssh.com", wait=True)

    def watch() -> None:
        while transport.is_active():
            time.sleep(every)
            asker = threading.Thread(target=probe, daemon=True)
            asker.start()
            asker.join(limit)
            if asker.is_alive() and transport.is_active():
                logging.getLogger(__name__).debug("no answer to a keepalive within %ss: closing", limit)
                transport.close()
                return

    threading.Thread(target=watch, daemon=True).start()


class Connection(Closing):
    """An authenticated SSH connection to one host. Thread-safe: channels are independent."""

    def __init__(
        self,
        host: Host,
        route: Route,
        clients: list[paramiko.SSHClient],
        settings: SSHSettings,
        release: list[Callable[[], None]] | None = None,
    ) -> None:
        self.host = host
        self.route = route
        self.settings = settings
        # The clients this connection owns (the target last), closed in reverse; then the
        # leases on shared jump connections are given back, nearest hop first.
        self._clients = clients
        self._release = release or []
        transport = clients[-1].get_transport()
        assert transport is not None
        self._transport: paramiko.Transport = transport
        # The host's Docker Engine socket, found on first use (docker_api): None until then, or
        # when the docker CLI must be used (another engine, or the socket cannot be reached).
        self._docker_lock = threading.Lock()
        self._docker_probed = False
        self._docker_socket: str | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.host.label}>"

    def close(self) -> None:
        for client in reversed(self._clients):
            client.close()
        release, self._release = self._release, []
        for give_back in reversed(release):
            give_back()

    def alive(self) -> bool:
        return self._transport.is_active()

    def reconnect(self) -> None:
        """Replace a lost connection with a new one to the same host (same checks as connect)."""
        fresh = connect(self.host, self.settings)
        old, old_release = self._clients, self._release
        self._clients, self._transport, self._release = fresh._clients, fresh._transport, fresh._release
        fresh._clients, fresh._release = [], []
        for client in reversed(old):
            with contextlib.suppress(Exception):  # already dead: nothing to close cleanly
                client.close()
        for give_back in reversed(old_release):
            give_back()

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv on the host (see runner.run): stdin is written then closed, never in argv."""
        return runner.run(
            self._transport,
            self.host.label,
            self.settings.connect_timeout,
            argv,
            stdin=stdin,
            timeout=self.settings.command_timeout if timeout is None else timeout,
        )

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        """Like run, but a non-zero exit status raises RemoteCommandError."""
        return checked(self.host.label, argv, self.run(argv, stdin=stdin, timeout=timeout))

    def http_client(self, timeout: float = 5.0) -> http11.Client:
        """HTTP to the host's own localhost through the SSH connection (see tunnel.http_client).

        `client.get("http://localhost:3100/health")` reaches the host's own localhost:3100. Close
        the client when done (its channels close with it; the SSH connection stays open).
        """
        from ghdeploy.transports.ssh import tunnel

        return tunnel.http_client(self._transport, self.host.label, timeout)

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        """The host's Docker Engine API through this connection, or None: use the docker CLI.

        The first call asks the host which engine its docker CLI uses (docker_api.probe_argv,
        one command) unless the caller already has that command's output (`probe`: status runs
        it with its other reads); later calls reuse the answer. A socket that cannot be reached
        turns the API off for the rest of the connection's life (see ghdeploy.docker_api).
        """
        from ghdeploy import docker_api
        from ghdeploy.transports.http11 import Client
        from ghdeploy.transports.ssh import streamlocal, tunnel

        with self._docker_lock:
            if not self._docker_probed:
                self._docker_probed = True
                if streamlocal.supported(self._transport):
                    if probe is None:
                        result = self.run(docker_api.probe_argv(), timeout=timeout)
                        probe = result.stdout if result.rc == 0 else None
                    self._docker_socket = docker_api.parse_probe(probe) if probe is not None else None
            socket_path = self._docker_socket
        if socket_path is None:
            return None
        opener = tunnel.socket_opener(self._transport, self.host.label, socket_path)
        return docker_api.DockerAPI(Client(opener, timeout), socket_path, on_unavailable=self._no_docker_api)

    def _no_docker_api(self) -> None:
        with self._docker_lock:
            self._docker_socket = None

    # --- streaming (ghdeploy logs) -------------------------------------------------------------

    def stream(self, argv: list[str]) -> RemoteStream:
        """Start argv on the host; read its output as it comes (see stream.RemoteStream)."""
        from ghdeploy.transports.ssh import stream

        return stream.start(self._transport, self.host.label, self.settings.connect_timeout, argv)

    def ping(self, timeout: float) -> bool:
        """Does the host still answer (an SSH keepalive within `timeout` seconds)?"""
        from ghdeploy.transports.ssh import stream

        return stream.ping(self._transport, timeout)
