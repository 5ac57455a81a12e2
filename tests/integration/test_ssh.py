"""ghdeploy.transports.ssh against the testbed's real sshd hosts (scripts/testbed up).

Each test runs with HOME pointed at an empty directory, so the developer's own
~/.ssh/known_hosts (which ghdeploy also reads) cannot make an "unknown" key known.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paramiko
import pytest

from ghdeploy.engine.fleet import close_all, connect_all
from ghdeploy.errors import HostKeyError, RemoteCommandError, SSHError
from ghdeploy.hosts import Host, parse_host, parse_host_list
from ghdeploy.progress import NullReporter
from ghdeploy.transports import http11, ssh
from ghdeploy.transports.ssh.connection import JUMPS

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def host(testbed_env: dict[str, str]) -> Host:
    return parse_host_list(testbed_env["GHTB_HOSTS_LIST"])[0]


@pytest.fixture(scope="session")
def jump_host(testbed_env: dict[str, str]) -> Host:
    return parse_host(testbed_env["GHTB_JUMP_HOST"])


@pytest.fixture
def settings(testbed_env: dict[str, str]) -> ssh.SSHSettings:
    return ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=Path(testbed_env["SSH_KNOWN_HOSTS"]))


@pytest.fixture
def conn(host: Host, settings: ssh.SSHSettings) -> Iterator[ssh.Connection]:
    with ssh.connect(host, settings) as connection:
        yield connection


def _known_key(testbed_env: dict[str, str], name: str) -> paramiko.PKey:
    keys = paramiko.HostKeys(testbed_env["SSH_KNOWN_HOSTS"]).lookup(name)
    assert keys is not None, f"testbed known_hosts has no entry for {name}"
    return next(iter(keys.values()))


# --- commands ----------------------------------------------------------------------------


def test_run_returns_rc_stdout_stderr(conn: ssh.Connection) -> None:
    result = conn.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert result == ssh.CommandResult(7, "out\n", "err\n")
    assert conn.run(["true"]).rc == 0


def test_stdin_reaches_the_command_and_not_its_argv(conn: ssh.Connection) -> None:
    secret = "s3cret-registry-token"
    # The shell prints its own argv first (from /proc), then copies stdin.
    result = conn.run(["sh", "-c", 'tr "\\0" " " < /proc/$$/cmdline; echo; cat'], stdin=secret.encode())
    cmdline, echoed = result.stdout.splitlines()
    assert echoed == secret
    assert secret not in cmdline and "cat" in cmdline


def test_big_stdin_and_big_output_on_both_streams_do_not_deadlock(conn: ssh.Connection) -> None:
    payload = b"0123456789abcdef" * 131072  # 2 MiB, more than any SSH window
    result = conn.run(["sh", "-c", "cat | tee /dev/stderr | wc -c"], stdin=payload, timeout=60)
    assert result.rc == 0 and result.stdout.strip() == str(len(payload))
    assert result.stderr == payload.decode()
    big = conn.run(["sh", "-c", "head -c 8000000 /dev/zero; head -c 8000000 /dev/zero >&2"], timeout=60)
    assert (len(big.stdout), len(big.stderr)) == (8_000_000, 8_000_000)


def test_argv_arrives_literally(conn: ssh.Connection, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"  # the testbed hosts share this filesystem
    argv = [
        "a b",
        "it's",
        '"double"',
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"x; touch {canary}",
        "*",
        "$HOME",
        "",
        "tab\there",
        "new\nline",
        "-n",
    ]
    result = conn.run(["printf", "%s\\0", *argv])
    assert result.stdout.split("\0")[:-1] == argv
    assert not canary.exists()


def test_check_raises_with_host_command_rc_and_stderr(conn: ssh.Connection, host: Host) -> None:
    with pytest.raises(RemoteCommandError) as info:
        conn.check(["sh", "-c", "echo broken thing >&2; exit 3", "my arg"])
    assert info.value.rc == 3 and "broken thing" in str(info.value)
    assert str(info.value).startswith(host.label) and "'my arg'" in info.value.command


def test_run_timeout(conn: ssh.Connection) -> None:
    started = time.monotonic()
    with pytest.raises(SSHError, match="did not finish"):
        conn.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5
    assert conn.run(["echo", "still usable"]).stdout == "still usable\n"


# --- host keys -----------------------------------------------------------------------------


def test_unknown_host_key_is_refused_and_known_hosts_untouched(
    host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    settings = ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=known_hosts)
    with pytest.raises(HostKeyError) as info:
        ssh.connect(host, settings)
    assert "host key" in str(info.value)
    assert ssh.fingerprint(_known_key(testbed_env, host.hostname)) in str(info.value)
    assert info.value.hint is not None and "--accept-new-host-key" in info.value.hint
    assert known_hosts.read_text() == ""


def test_accept_new_host_key_records_it_then_plain_connect_works(
    host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    known_hosts = tmp_path / "fresh" / "known_hosts"  # neither file nor dir exists yet
    key_file = Path(testbed_env["EC2_KEY"])
    accepting = ssh.SSHSettings(key_file=key_file, known_hosts=known_hosts, accept_new_host_key=True)
    with ssh.connect(host, accepting) as connection:
        assert connection.run(["true"]).rc == 0
    assert (known_hosts.parent.stat().st_mode & 0o777) == 0o700
    recorded = paramiko.HostKeys(str(known_hosts)).lookup(host.hostname)
    assert recorded is not None
    assert list(recorded.values()) == [_known_key(testbed_env, host.hostname)]
    with ssh.connect(host, ssh.SSHSettings(key_file=key_file, known_hosts=known_hosts)) as connection:
        assert connection.run(["echo", "ok"]).stdout == "ok\n"


def test_changed_host_key_is_refused_even_with_accept_new(
    host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    wrong = paramiko.PKey.from_path(Path(testbed_env["EC2_KEY"]))  # any key but the host's
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(ssh.known_hosts_line(host.hostname, wrong))
    before = known_hosts.read_text()
    settings = ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=known_hosts, accept_new_host_key=True)
    with pytest.raises(HostKeyError) as info:
        ssh.connect(host, settings)
    assert "CHANGED" in str(info.value) and "host key" in str(info.value)
    assert info.value.hint is not None and f"ssh-keygen -R {host.hostname} -f {known_hosts}" in info.value.hint
    assert known_hosts.read_text() == before


# --- connection failures ---------------------------------------------------------------------


def test_connection_refused_is_quick_and_clear(host: Host, settings: ssh.SSHSettings) -> None:
    closed_port = Host(host.hostname, host.user, 2222)
    started = time.monotonic()
    with pytest.raises(SSHError) as info:
        ssh.connect(closed_port, settings)
    assert time.monotonic() - started < 3
    assert "connection refused" in str(info.value) and str(info.value).startswith(closed_port.label)
    assert info.value.hint is not None and "sshd" in info.value.hint


def test_unreachable_address_is_quick_and_clear(testbed_env: dict[str, str], settings: ssh.SSHSettings) -> None:
    unused = parse_host("root@10.77.250.2")
    fast = ssh.SSHSettings(key_file=settings.key_file, known_hosts=settings.known_hosts, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(SSHError) as info:
        ssh.connect(unused, fast)
    assert time.monotonic() - started < 3
    assert "unreachable" in str(info.value) or "no answer" in str(info.value)
    assert info.value.hint is not None and "security group" in info.value.hint


def test_wrong_user_is_an_authentication_error(host: Host, settings: ssh.SSHSettings) -> None:
    stranger = Host(host.hostname, "nosuchuser", host.port)
    with pytest.raises(SSHError, match="authentication failed for user 'nosuchuser'") as info:
        ssh.connect(stranger, settings)
    assert str(settings.key_file) in str(info.value)
    assert info.value.hint is not None and "EC2_KEY" in info.value.hint


# --- HTTP through the tunnel ------------------------------------------------------------------


@pytest.fixture
def remote_http(conn: ssh.Connection, tmp_path: Path) -> Iterator[int]:
    """A busybox httpd on the host's own 127.0.0.1 (not reachable from here without the tunnel)."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "health").write_text('{"status":"ok"}')
    port = random.randint(20000, 29999)
    started = conn.check(
        [
            "sh",
            "-c",
            'busybox httpd -f -p "127.0.0.1:$1" -h "$2" </dev/null >/dev/null 2>&1 & echo $!',
            "sh",
            str(port),
            str(docroot),
        ]
    )
    pid = started.stdout.strip()
    try:
        yield port
    finally:
        conn.run(["kill", pid])


def test_http_client_reaches_the_hosts_own_localhost(conn: ssh.Connection, remote_http: int) -> None:
    url = f"http://localhost:{remote_http}/health"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=1)  # the server is not reachable from here directly
    with conn.http_client(timeout=5) as client:
        deadline = time.monotonic() + 5
        while True:  # httpd may still be binding
            try:
                response = client.get(url)
                break
            except http11.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert client.get(f"http://127.0.0.1:{remote_http}/missing").status_code == 404
        # Polling /health every 100 ms must be cheap: each GET is one channel open + request.
        timings = []
        for _ in range(20):
            started = time.monotonic()
            assert client.get(url).status_code == 200
            timings.append(time.monotonic() - started)
        assert statistics.median(timings) < 0.05, timings


def test_http_client_refused_port_is_connect_error(conn: ssh.Connection, remote_http: int) -> None:
    closed = remote_http + 1 if remote_http < 29999 else remote_http - 1
    with conn.http_client(timeout=5) as client, pytest.raises(http11.ConnectError):
        client.get(f"http://localhost:{closed}/health")
    # The SSH connection survives a refused tunnel.
    assert conn.run(["true"]).rc == 0


# --- ProxyJump ---------------------------------------------------------------------------------


def test_proxyjump_from_ssh_config_reaches_the_jump_only_host(
    host: Host, jump_host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    # An alias, with everything (address, user, key, jump) coming from the config; the key
    # from `Host *` applies to the jump hop too, as in OpenSSH.
    config.write_text(
        f"Host behind\n  HostName {jump_host.hostname}\n  User {jump_host.user}\n  ProxyJump {host.label}\n"
        f"Host *\n  IdentityFile {testbed_env['EC2_KEY']}\n"
    )
    settings = ssh.SSHSettings(
        key_file=None, known_hosts=Path(testbed_env["SSH_KNOWN_HOSTS"]), ssh_config=config, connect_timeout=5
    )
    with pytest.raises(SSHError):  # not reachable directly
        ssh.connect(jump_host, ssh.SSHSettings(None, settings.known_hosts, connect_timeout=1))
    with ssh.connect(Host("behind"), settings) as connection:
        assert [hop.hostname for hop in connection.route.jumps] == [host.hostname]
        addresses = connection.check(["ip", "-4", "-o", "addr"]).stdout
        assert f" {jump_host.hostname}/" in addresses


def _tcp_connections_to(address: str) -> int:
    """Established TCP connections from this process to address:22 (as the kernel sees them)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", "dst", f"{address}:22"], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={os.getpid()}," in line)


def test_hosts_behind_one_jump_host_share_one_connection_to_it(
    host: Host, jump_host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    # Three targets behind the jump host h1 (the jump-only host under two names, and h1's own
    # sshd reached from inside h1), connected at once as a fleet command does.
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host behind-a behind-b\n  HostName {jump_host.hostname}\n  User {jump_host.user}\n  ProxyJump {host.label}\n"
        f"Host itself\n  HostName {host.hostname}\n  User {host.user}\n  ProxyJump {host.label}\n"
    )
    settings = ssh.SSHSettings(
        key_file=Path(testbed_env["EC2_KEY"]),
        known_hosts=Path(testbed_env["SSH_KNOWN_HOSTS"]),
        ssh_config=config,
        connect_timeout=5,
    )
    before = _tcp_connections_to(host.hostname)
    conns, errors = connect_all([Host("behind-a"), Host("behind-b"), Host("itself")], settings, NullReporter())
    try:
        assert errors == {}, errors
        assert _tcp_connections_to(host.hostname) == before + 1
        assert JUMPS.open_count() == 1
        for label in ("behind-a", "behind-b"):
            assert f" {jump_host.hostname}/" in conns[label].check(["ip", "-4", "-o", "addr"]).stdout
        assert conns["itself"].run(["true"]).rc == 0
        # Closing one target leaves the others (and their shared jump) working.
        conns.pop("behind-a").close()
        assert conns["behind-b"].run(["true"]).rc == 0
    finally:
        close_all(conns)
    assert JUMPS.open_count() == 0
    assert _tcp_connections_to(host.hostname) == before


def test_proxyjump_host_keys_are_checked_too(
    host: Host, jump_host: Host, testbed_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {jump_host.hostname}\n  ProxyJump {host.label}\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    settings = ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=known_hosts, ssh_config=config)
    with pytest.raises(HostKeyError, match="host key") as info:
        ssh.connect(jump_host, settings)
    assert ssh.fingerprint(_known_key(testbed_env, host.hostname)) in str(info.value)  # the jump host's, first
    assert known_hosts.read_text() == ""
    accepting = ssh.SSHSettings(settings.key_file, known_hosts, accept_new_host_key=True, ssh_config=config)
    with ssh.connect(jump_host, accepting) as connection:
        assert connection.run(["true"]).rc == 0
    recorded = paramiko.HostKeys(str(known_hosts))
    assert recorded.lookup(host.hostname) is not None and recorded.lookup(jump_host.hostname) is not None


def test_testbed_ssh_config_is_understood(jump_host: Host, host: Host, testbed_env: dict[str, str]) -> None:
    """The testbed's own config (Host 10.77.* with IdentityFile, plus unrelated keys) resolves."""
    config = ssh.load_ssh_config(Path(testbed_env["GHTB_SSH_CONFIG"]), host.label)
    route = ssh.resolve_route(Host(host.hostname), config, None, default_user="nobody")
    assert route.target.user == "root" and route.target.key_files == (Path(testbed_env["EC2_KEY"]),)
    assert route.jumps == ()
