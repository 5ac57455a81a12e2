"""ghdeploy.transports.ssh without a network: naming, ssh-config resolution, error translation, and the
run/http plumbing against fake paramiko channels."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ghdeploy.errors import HostKeyError, RemoteCommandError, SSHError
from ghdeploy.hosts import Host, parse_host
from ghdeploy.transports import http11, ssh
from ghdeploy.transports.ssh import hostkeys

# --- helpers ----------------------------------------------------------------------------


def _write_key(path: Path, password: bytes | None = None) -> Path:
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    path.with_suffix(".pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return path


def _pkey(tmp_path: Path, name: str = "k") -> paramiko.PKey:
    return paramiko.PKey.from_path(_write_key(tmp_path / name))


def _config(text: str) -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(text)


def _settings(tmp_path: Path, **kw: Any) -> ssh.SSHSettings:
    return ssh.SSHSettings(key_file=kw.pop("key_file", None), known_hosts=tmp_path / "known_hosts", **kw)


TARGET = ssh.Endpoint("10.0.0.5", 22, "ubuntu", (Path("/keys/ec2.pem"),))
ROUTE = ssh.Route(TARGET)


# --- naming and known_hosts ---------------------------------------------------------------


def test_known_hosts_name_brackets_non_default_ports() -> None:
    assert ssh.known_hosts_name("10.0.0.5", 22) == "10.0.0.5"
    assert ssh.known_hosts_name("10.0.0.5", 2222) == "[10.0.0.5]:2222"
    assert ssh.known_hosts_name("fd00::1", 2222) == "[fd00::1]:2222"


def test_fingerprint_is_openssh_sha256(tmp_path: Path) -> None:
    key = _pkey(tmp_path)
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    assert ssh.fingerprint(key) == f"SHA256:{digest}"


def test_known_hosts_line_is_openssh_format(tmp_path: Path) -> None:
    key = _pkey(tmp_path)
    line = ssh.known_hosts_line("[h]:2222", key)
    assert line == f"[h]:2222 ssh-ed25519 {key.get_base64()}\n"


def test_append_known_host_creates_private_dir_and_is_readable_by_paramiko(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "known_hosts"
    key = _pkey(tmp_path)
    ssh.append_known_host(path, "[10.0.0.5]:2222", key)
    ssh.append_known_host(path, "[10.0.0.5]:2222", key)  # no duplicate
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert path.read_text().count("\n") == 1
    keys = paramiko.HostKeys(str(path))
    assert keys.lookup("[10.0.0.5]:2222") is not None
    assert keys.lookup("10.0.0.5") is None


def test_append_known_host_keeps_existing_lines_without_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("# mine, no newline at end")
    ssh.append_known_host(path, "h", _pkey(tmp_path))
    lines = path.read_text().splitlines()
    assert lines[0] == "# mine, no newline at end"
    assert lines[1].startswith("h ssh-ed25519 ")


# --- ssh config resolution ------------------------------------------------------------------


def test_resolve_without_config_uses_defaults_and_local_user() -> None:
    route = ssh.resolve_route(Host("web1"), None, Path("/k.pem"), default_user="alice")
    assert route == ssh.Route(ssh.Endpoint("web1", 22, "alice", (Path("/k.pem"),)))
    route = ssh.resolve_route(Host("web1", "ubuntu", 2200), None, None, default_user="alice")
    assert route.target == ssh.Endpoint("web1", 2200, "ubuntu", ())


def test_resolve_default_user_is_the_local_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "carol")
    assert ssh.resolve_route(Host("web1"), None, None).target.user == "carol"


def test_resolve_applies_hostname_user_port_identityfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    _write_key(tmp_path / ".ssh" / "prod.pem")
    config = _config(
        "Host prod\n  HostName 10.1.2.3\n  User ec2-user\n  Port 2200\n"
        "  IdentityFile ~/.ssh/prod.pem\n  IdentityFile ~/.ssh/missing.pem\n"
    )
    target = ssh.resolve_route(Host("prod"), config, None, default_user="alice").target
    assert target == ssh.Endpoint("10.1.2.3", 2200, "ec2-user", (tmp_path / ".ssh" / "prod.pem",))


def test_resolve_operator_values_win_over_config_and_ec2_key_is_tried_first(tmp_path: Path) -> None:
    extra = _write_key(tmp_path / "extra.pem")
    config = _config(f"Host prod\n  HostName 10.1.2.3\n  User ec2-user\n  Port 2200\n  IdentityFile {extra}\n")
    target = ssh.resolve_route(Host("prod", "ubuntu", 22), config, Path("/ec2.pem")).target
    assert (target.hostname, target.user, target.port) == ("10.1.2.3", "ubuntu", 22)
    assert target.key_files == (Path("/ec2.pem"), extra)


def test_resolve_proxyjump_chain_with_each_hops_config() -> None:
    config = _config(
        "Host app\n  HostName 10.9.0.7\n  ProxyJump bastion,ops@inner:2201\n"
        "Host bastion\n  HostName 203.0.113.10\n  User jump\n"
        "Host inner\n  HostName 10.9.0.2\n  User nobody\n"
    )
    route = ssh.resolve_route(Host("app"), config, Path("/k"), default_user="alice")
    assert route.target == ssh.Endpoint("10.9.0.7", 22, "alice", (Path("/k"),))
    assert route.jumps == (
        ssh.Endpoint("203.0.113.10", 22, "jump", (Path("/k"),)),
        ssh.Endpoint("10.9.0.2", 2201, "ops", (Path("/k"),)),
    )


def test_resolve_first_hops_own_proxyjump_is_followed_later_hops_not() -> None:
    config = _config(
        "Host app\n  ProxyJump b1,b2\n"
        "Host b1\n  ProxyJump outer\n"
        "Host b2\n  ProxyJump ignored\n"  # OpenSSH overrides it with -J b1
    )
    route = ssh.resolve_route(Host("app"), config, None, default_user="u")
    assert [hop.hostname for hop in route.jumps] == ["outer", "b1", "b2"]


def test_resolve_proxyjump_forms_and_none() -> None:
    config = _config("Host a\n  ProxyJump ssh://ops@bastion:2022\nHost b\n  ProxyJump none\n")
    assert ssh.resolve_route(Host("a"), config, None, "u").jumps == (ssh.Endpoint("bastion", 2022, "ops"),)
    assert ssh.resolve_route(Host("b"), config, None, "u").jumps == ()


def test_resolve_proxyjump_loop_and_garbage_are_sshErrors() -> None:
    loop = _config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(SSHError, match="ProxyJump chain") as info:
        ssh.resolve_route(Host("a"), loop, None, "u")
    assert info.value.hint
    bad = _config("Host a\n  ProxyJump bad host!\n")
    with pytest.raises(SSHError, match="bad ProxyJump"):
        ssh.resolve_route(Host("a"), bad, None, "u")


def test_resolve_bad_port_in_config_is_an_sshError() -> None:
    with pytest.raises(SSHError, match="bad Port"):
        ssh.resolve_route(Host("a"), _config("Host a\n  Port twenty-two\n"), None, "u")


def test_load_ssh_config_missing_file_is_no_config(tmp_path: Path) -> None:
    assert ssh.load_ssh_config(None, "h") is None
    assert ssh.load_ssh_config(tmp_path / "nope", "h") is None
    path = tmp_path / "config"
    path.write_text("Host x\n  Port 2\n")
    config = ssh.load_ssh_config(path, "h")
    assert config is not None and config.lookup("x")["port"] == "2"


# --- error translation ----------------------------------------------------------------------


def _translate(exc: BaseException, endpoint: ssh.Endpoint = TARGET, route: ssh.Route = ROUTE) -> SSHError:
    error = ssh.translate_connect_error(exc, endpoint, route, ssh.SSHSettings(None, Path("kh"), connect_timeout=3))
    assert error.host == route.target.label
    assert str(error).startswith(route.target.label + ": ")
    assert error.hint, "every error ends with what to do"
    assert "\n" not in str(error)
    return error


def test_translate_connection_refused() -> None:
    exc = paramiko.ssh_exception.NoValidConnectionsError({("10.0.0.5", 22): OSError(errno.ECONNREFUSED, "refused")})
    error = _translate(exc)
    assert "connection refused by 10.0.0.5:22" in str(error)
    assert error.hint is not None and "sshd running" in error.hint


def test_translate_unreachable_timeout_and_dns() -> None:
    exc = paramiko.ssh_exception.NoValidConnectionsError({("10.0.0.5", 22): OSError(errno.EHOSTUNREACH, "no route")})
    assert "unreachable" in str(_translate(exc))
    timed_out = _translate(TimeoutError("timed out"))
    assert "no answer from 10.0.0.5:22 within 3 s" in str(timed_out)
    assert timed_out.hint is not None and "security group" in timed_out.hint
    dns = _translate(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert "cannot resolve host name '10.0.0.5'" in str(dns)


def test_translate_authentication_names_user_and_key() -> None:
    error = _translate(paramiko.AuthenticationException("Authentication failed."))
    assert "user 'ubuntu'" in str(error) and "/keys/ec2.pem" in str(error)
    assert error.hint is not None and "EC2_KEY" in error.hint and "user" in error.hint
    no_key = ssh.Endpoint("10.0.0.5", 22, "ubuntu")
    assert "ssh-agent" in str(_translate(paramiko.SSHException("No authentication methods available"), no_key))
    allowed = _translate(paramiko.BadAuthenticationType("Bad authentication type", ["password"]))
    assert "password" in str(allowed)


def test_translate_banner_eof_and_timeout() -> None:
    closed = paramiko.SSHException("Error reading SSH protocol banner")
    closed.__context__ = EOFError()  # how paramiko reports a peer that hung up
    assert "not an SSH server" in str(_translate(closed))
    assert "no SSH banner within 3 s" in str(_translate(paramiko.SSHException("Error reading SSH protocol banner")))


def test_translate_names_the_jump_host() -> None:
    jump = ssh.Endpoint("203.0.113.10", 22, "jump")
    route = ssh.Route(TARGET, (jump,))
    error = _translate(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), jump, route)
    assert str(error) == "ubuntu@10.0.0.5: jump host jump@203.0.113.10: connection refused by 203.0.113.10:22"
    onward = _translate(paramiko.ChannelException(2, "Connect failed"), jump, route)
    assert "Connect failed" in str(onward)


def test_translate_anything_else_is_one_line() -> None:
    assert "SSH connection to 10.0.0.5:22 failed" in str(_translate(paramiko.SSHException("Incompatible ssh peer")))
    assert "failed" in str(_translate(RuntimeError("boom")))


# --- key files -------------------------------------------------------------------------------


def test_load_private_key_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SSHError, match="does not exist") as info:
        ssh.load_private_key(tmp_path / "none.pem", TARGET, ROUTE)
    assert info.value.hint
    encrypted = _write_key(tmp_path / "enc", password=b"secret")
    with pytest.raises(SSHError, match="encrypted") as info:
        ssh.load_private_key(encrypted, TARGET, ROUTE)
    assert info.value.hint is not None and "passphrase" not in info.value.hint
    with pytest.raises(SSHError, match="not a private key") as info:
        ssh.load_private_key(encrypted.with_suffix(".pub"), TARGET, ROUTE)
    assert info.value.hint is not None and ".pub" in info.value.hint
    assert ssh.load_private_key(_write_key(tmp_path / "ok"), TARGET, ROUTE).get_name() == "ssh-ed25519"


def test_load_private_key_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: the tests run as root, which can read any file.
    def denied(path: Any, password: Any = None) -> paramiko.PKey:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(paramiko.PKey, "from_path", staticmethod(denied))
    with pytest.raises(SSHError, match="not readable") as info:
        ssh.load_private_key(tmp_path / "k", TARGET, ROUTE)
    assert info.value.hint is not None and "chmod 600" in info.value.hint


# --- host key policy -----------------------------------------------------------------------


def test_unknown_host_key_is_refused_without_touching_known_hosts(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key = _pkey(tmp_path)
    policy = hostkeys.policy_class()("root@h", settings)
    with pytest.raises(HostKeyError) as info:
        policy.missing_host_key(paramiko.SSHClient(), "h", key)
    assert "host key" in str(info.value) and ssh.fingerprint(key) in str(info.value)
    assert info.value.hint is not None and "--accept-new-host-key" in info.value.hint
    assert info.value.exit_code == 2
    assert not settings.known_hosts.exists()


def test_accept_new_host_key_records_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, accept_new_host_key=True)
    key = _pkey(tmp_path)
    client = paramiko.SSHClient()
    hostkeys.policy_class()("root@h:2222", settings).missing_host_key(client, "[h]:2222", key)
    assert client.get_host_keys().lookup("[h]:2222") is not None
    assert settings.known_hosts.read_text() == f"[h]:2222 ssh-ed25519 {key.get_base64()}\n"


def test_changed_key_hint_says_how_to_remove_the_stale_entry(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    old, new = _pkey(tmp_path, "old"), _pkey(tmp_path, "new")
    ssh.append_known_host(settings.known_hosts, "[10.0.0.5]:2222", old)
    endpoint = ssh.Endpoint("10.0.0.5", 2222, "root")
    error = hostkeys.changed_key_error(
        paramiko.BadHostKeyException("10.0.0.5", new, old), endpoint, ssh.Route(endpoint), settings
    )
    assert "CHANGED" in str(error) and ssh.fingerprint(new) in str(error) and ssh.fingerprint(old) in str(error)
    assert error.hint is not None
    assert f"ssh-keygen -R '[10.0.0.5]:2222' -f {settings.known_hosts}" in error.hint


# --- run / check against a fake channel -------------------------------------------------------


class FakeChannel:
    """Just enough of paramiko.Channel: exec_command records, recv/recv_stderr replay."""

    def __init__(self, stdout: bytes, stderr: bytes, rc: int, hang: bool = False) -> None:
        self.command: str | None = None
        self.stdin = b""
        self.stdin_closed = False
        self.closed = False
        self.exit_status = rc
        self.status_event = threading.Event()
        self._chunks = {"out": [stdout], "err": [stderr]}
        self._wake = threading.Event()
        self._hang = hang

    def exec_command(self, command: str) -> None:
        self.command = command

    def _read(self, which: str) -> bytes:
        if self._hang:
            self._wake.wait()
            return b""
        chunks = self._chunks[which]
        data = chunks.pop(0) if chunks else b""
        if not self._chunks["out"] and not self._chunks["err"]:
            self.status_event.set()
        return data

    def recv(self, n: int) -> bytes:
        return self._read("out")

    def recv_stderr(self, n: int) -> bytes:
        return self._read("err")

    def sendall(self, data: bytes) -> None:
        self.stdin += data

    def shutdown_write(self) -> None:
        self.stdin_closed = True

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class FakeTransport:
    def __init__(self, channel: FakeChannel | None = None, open_error: Exception | None = None) -> None:
        self.channel = channel
        self.open_error = open_error
        self.opened: list[tuple[Any, ...]] = []

    def open_session(self, timeout: float | None = None) -> FakeChannel:
        assert self.channel is not None
        return self.channel

    def open_channel(self, kind: str, dest: tuple[str, int], src: tuple[str, int], timeout: float | None = None) -> Any:
        self.opened.append((kind, dest))
        if self.open_error:
            raise self.open_error
        return self.channel

    def is_active(self) -> bool:
        return True


class FakeClient:
    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.closed = False

    def get_transport(self) -> FakeTransport:
        return self.transport

    def close(self) -> None:
        self.closed = True


def _connection(transport: FakeTransport) -> ssh.Connection:
    host = parse_host("root@web1")
    endpoint = ssh.Endpoint("web1", 22, "root")
    client: Any = FakeClient(transport)
    return ssh.Connection(host, ssh.Route(endpoint), [client], ssh.SSHSettings(None, Path("kh")))


def test_run_quotes_every_value_and_returns_rc_stdout_stderr() -> None:
    channel = FakeChannel(b"out\n", b"err\n", 3)
    argv = ["printf", "%s", "a b", "it's", '"q"', "$(reboot)", "x; rm -rf /", ""]
    result = _connection(FakeTransport(channel)).run(argv)
    assert result == ssh.CommandResult(3, "out\n", "err\n")
    assert channel.command == shlex.join(argv)
    assert shlex.split(channel.command) == argv
    assert channel.stdin_closed and channel.closed


def test_run_sends_stdin_then_eof_never_in_argv() -> None:
    channel = FakeChannel(b"", b"", 0)
    _connection(FakeTransport(channel)).run(["docker", "login", "--password-stdin"], stdin=b"s3cret")
    assert channel.stdin == b"s3cret" and channel.stdin_closed
    assert channel.command is not None and "s3cret" not in channel.command


def test_run_timeout_is_an_sshError_and_closes_the_channel() -> None:
    channel = FakeChannel(b"", b"", 0, hang=True)
    with pytest.raises(SSHError, match=r"did not finish within 0\.2 s") as info:
        _connection(FakeTransport(channel)).run(["sleep", "100"], timeout=0.2)
    assert info.value.hint and channel.closed


def test_check_raises_remote_command_error() -> None:
    conn = _connection(FakeTransport(FakeChannel(b"", b"no such service\n", 1)))
    with pytest.raises(RemoteCommandError) as info:
        conn.check(["docker", "compose", "stop", "my worker"])
    assert info.value.rc == 1 and info.value.command == "docker compose stop 'my worker'"
    assert "web1" in str(info.value) and "no such service" in str(info.value)


def test_connection_closes_and_is_a_context_manager() -> None:
    transport = FakeTransport(FakeChannel(b"", b"", 0))
    with _connection(transport) as conn:
        client: Any = conn._clients[0]
    assert client.closed


# --- http through a fake tunnel ----------------------------------------------------------------


class FakeHTTPChannel:
    """A direct-tcpip channel to a tiny HTTP server: answers every request it is sent."""

    def __init__(self, body: bytes = b"ok") -> None:
        self.sent = b""
        self.body = body
        self.pending = b""
        self.closed = False
        self.eof_received = False
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:
        self.sent += data
        if b"\r\n\r\n" in self.sent:
            self.pending += b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.body), self.body)

    def recv(self, n: int) -> bytes:
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def close(self) -> None:
        self.closed = True


def test_http_client_opens_direct_tcpip_to_the_url_host_and_port() -> None:
    channel = FakeHTTPChannel(b'{"status":"ok"}')
    transport = FakeTransport(open_error=None)
    transport.channel = channel  # type: ignore[assignment]
    with _connection(transport).http_client() as client:
        response = client.get("http://localhost:3100/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert transport.opened == [("direct-tcpip", ("localhost", 3100))]
    assert channel.sent.startswith(b"GET /health HTTP/1.1\r\n")
    assert channel.closed


def test_http_client_refused_port_is_connect_error() -> None:
    transport = FakeTransport(open_error=paramiko.ChannelException(2, "Connect failed"))
    with _connection(transport).http_client() as client, pytest.raises(http11.ConnectError, match="Connect failed"):
        client.get("http://localhost:3101/worker/health")


def test_http_client_channel_open_timeout_is_connect_timeout() -> None:
    transport = FakeTransport(open_error=paramiko.SSHException("Timeout opening channel."))
    with _connection(transport).http_client() as client, pytest.raises(http11.ConnectTimeout):
        client.get("http://localhost:3100/health")


def test_http_client_refuses_https() -> None:
    transport = FakeTransport()
    transport.channel = FakeHTTPChannel()  # type: ignore[assignment]
    with _connection(transport).http_client() as client, pytest.raises(http11.ConnectError, match="https"):
        client.get("https://localhost:3100/health")


# --- lazy imports ------------------------------------------------------------------------------


def test_importing_the_module_does_not_import_paramiko_or_httpx() -> None:
    code = (
        "import sys, ghdeploy.transports.ssh\n"
        "heavy = [m for m in ('paramiko', 'httpx', 'httpcore', 'cryptography') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


def test_revoked_key_is_refused_as_revoked_even_when_also_listed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, accept_new_host_key=True)
    key = _pkey(tmp_path)
    line = f"{key.get_name()} {key.get_base64()}"
    settings.known_hosts.write_text(f"h {line}\n@revoked * {line}\n")
    client = paramiko.SSHClient()
    hostkeys.load_known_hosts(client, settings, "root@h")
    assert client.get_host_keys().lookup("h") is None  # not trusted: the policy decides, and refuses
    with pytest.raises(HostKeyError, match="REVOKED") as info:
        hostkeys.policy_class()("root@h", settings).missing_host_key(client, "h", key)
    assert str(settings.known_hosts) in str(info.value)
    assert settings.known_hosts.read_text().count(line) == 2  # --accept-new-host-key did not record it


def test_cert_authority_lines_are_skipped_with_a_note_not_an_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key, ca = _pkey(tmp_path, "host"), _pkey(tmp_path, "ca")
    settings.known_hosts.write_text(
        f"@cert-authority *.example.com {ca.get_name()} {ca.get_base64()}\nh {key.get_name()} {key.get_base64()}\n"
    )
    client = paramiko.SSHClient()
    hostkeys.load_known_hosts(client, settings, "root@h")  # not "cannot read known_hosts" for every host
    assert client.get_host_keys().lookup("h") is not None
    with pytest.raises(HostKeyError, match="@cert-authority") as info:
        hostkeys.policy_class()("root@other", settings).missing_host_key(client, "other.example.com", ca)
    assert "does not check host certificates" in str(info.value) and f"{settings.known_hosts}:1" in str(info.value)


def test_a_socket_opened_ahead_is_dropped_when_the_ssh_config_sends_the_host_elsewhere(tmp_path: Path) -> None:
    """connect(sock=...) uses a TCP connection opened ahead only for the host as written; here
    the config's HostName/Port point at a closed loopback port, so it is closed, not used."""
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    port = closed_port.getsockname()[1]
    closed_port.close()  # nothing listens there now: the real connect is refused at once
    config = tmp_path / "config"
    config.write_text(f"Host web1\n  HostName 127.0.0.1\n  Port {port}\n")
    early_a, early_b = socket.socketpair()
    settings = ssh.SSHSettings(key_file=None, known_hosts=tmp_path / "known_hosts", ssh_config=config)
    with pytest.raises(SSHError) as refused:
        ssh.connect(Host("web1", "u"), settings, early_a)
    assert f"127.0.0.1:{port}" in str(refused.value) and "refused" in str(refused.value)  # went where the config says
    assert early_a.fileno() == -1  # closed
    early_b.close()


def test_a_failed_early_connect_is_reported_without_a_second_attempt(tmp_path: Path) -> None:
    """An unreachable host must not cost two connect timeouts: the error from the TCP connect
    made ahead is the connect's own, translated the same way."""
    settings = ssh.SSHSettings(key_file=None, known_hosts=tmp_path / "known_hosts")
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    with pytest.raises(SSHError) as failed:
        ssh.connect(Host("192.0.2.1", "u"), settings, refused)  # TEST-NET-1: never reached here
    assert "refused" in str(failed.value) and failed.value.__cause__ is refused
