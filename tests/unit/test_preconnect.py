"""Connecting ahead (engine/preconnect.py): started after validation, collected by connect_all."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ghdeploy import cli
from ghdeploy.engine import connect as engine_connect
from ghdeploy.engine import preconnect
from ghdeploy.errors import SSHError
from ghdeploy.hosts import Host
from ghdeploy.progress import NullReporter
from ghdeploy.transports import ssh
from ghdeploy.transports.ssh import SSHSettings


class FakeConn:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.pinged = False
        self.closed = False

    def ping(self, timeout: float) -> bool:
        self.pinged = True
        return True

    def alive(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


class FakeSocket:
    def __init__(self, hostname: str, port: int) -> None:
        self.address = (hostname, port)


# The TCP connections opened ahead (hostname, port), and the socket each connect() was handed.
EARLY: list[tuple[str, int]] = []
HANDED: dict[str, Any] = {}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every connect() made, by host label; 'bad' hosts fail as an unreachable host does (their
    early TCP connect is refused too). No test here opens a real connection or looks up a name."""
    made: list[str] = []
    lock = threading.Lock()
    EARLY.clear()
    HANDED.clear()

    def fake_tcp(hostname: str, port: int, timeout: float) -> Any:
        with lock:
            EARLY.append((hostname, port))
        if hostname.startswith("bad"):
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeSocket(hostname, port)

    def fake_connect(host: Host, settings: SSHSettings, sock: Any = None) -> Any:
        with lock:
            made.append(host.label)
            HANDED[host.label] = sock
        if host.hostname.startswith("bad"):
            raise SSHError(host.label, "connection refused")
        return FakeConn(host)

    monkeypatch.setattr(ssh, "connect", fake_connect)
    monkeypatch.setattr("ghdeploy.transports.tcp.tcp_connect", fake_tcp)
    yield made
    # No connect thread of this test may outlive it: it would call the next test's fakes.
    for future in list(preconnect._started.values()):
        with contextlib.suppress(Exception):
            future.result(timeout=10)
    preconnect._close_untaken()


SETTINGS = SSHSettings(key_file=None, known_hosts=Path("/nonexistent/known_hosts"))


def test_connect_all_takes_what_was_started_ahead_and_connects_only_once(calls: list[str]) -> None:
    hosts = [Host("h1", "u"), Host("h2", "u")]
    preconnect.start(hosts, SETTINGS)
    conns, errors = engine_connect.connect_all(hosts, SETTINGS, NullReporter())
    assert sorted(conns) == ["u@h1", "u@h2"] and errors == {}
    assert sorted(calls) == ["u@h1", "u@h2"]  # not connected a second time
    assert all(getattr(c, "pinged", False) for c in conns.values())  # primed: sshd's session setup already waited for
    # Each host's TCP connection was opened ahead (before paramiko's import) and handed over.
    assert sorted(EARLY) == [("h1", 22), ("h2", 22)]
    assert HANDED["u@h1"].address == ("h1", 22) and HANDED["u@h2"].address == ("h2", 22)


def test_with_an_ssh_config_nothing_is_opened_before_the_route_is_known(calls: list[str], tmp_path: Path) -> None:
    # HostName, Port or ProxyJump may send the host elsewhere than its name says.
    settings = SSHSettings(key_file=None, known_hosts=Path("/nonexistent/known_hosts"), ssh_config=tmp_path / "config")
    hosts = [Host("h1", "u", 2222)]
    preconnect.start(hosts, settings)
    conns, _ = engine_connect.connect_all(hosts, settings, NullReporter())
    assert list(conns) == ["u@h1:2222"] and EARLY == [] and HANDED["u@h1:2222"] is None


def test_other_settings_or_hosts_connect_fresh(calls: list[str]) -> None:
    preconnect.start([Host("h1", "u")], SETTINGS)
    other = SSHSettings(key_file=None, known_hosts=Path("/nonexistent/known_hosts"), accept_new_host_key=True)
    conns, _ = engine_connect.connect_all([Host("h1", "u"), Host("h3", "u")], other, NullReporter())
    assert sorted(conns) == ["u@h1", "u@h3"]
    preconnect._started[("u@h1", SETTINGS)].result(timeout=10)  # the early one, untaken, has ended
    assert sorted(calls) == ["u@h1", "u@h1", "u@h3"]  # the early one did not match these settings


def test_a_failed_early_connect_is_that_hosts_error_as_before(calls: list[str]) -> None:
    hosts = [Host("bad1", "u"), Host("h2", "u")]
    preconnect.start(hosts, SETTINGS)
    conns, errors = engine_connect.connect_all(hosts, SETTINGS, NullReporter())
    assert list(conns) == ["u@h2"]
    assert "connection refused" in str(errors["u@bad1"])
    assert sorted(calls) == ["u@bad1", "u@h2"]
    # The refused early connect is handed over as connect()'s own failure (no second attempt).
    assert isinstance(HANDED["u@bad1"], ConnectionRefusedError)


def test_a_connection_nobody_took_is_closed_at_exit(calls: list[str]) -> None:
    preconnect.start([Host("h9", "u")], SETTINGS)
    future = preconnect._started[("u@h9", SETTINGS)]
    conn: Any = future.result(timeout=5)
    preconnect._close_untaken()
    assert conn.closed and preconnect._started == {}


def test_only_the_first_hosts_are_started_ahead(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preconnect, "AHEAD_LIMIT", 2)
    preconnect.start([Host(f"h{n}", "u") for n in range(5)], SETTINGS)
    assert len(preconnect._started) == 2


def _run_cli(monkeypatch: pytest.MonkeyPatch, cwd: Path, *argv: str) -> int:
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("EC2_HOST", "u@h1")
    monkeypatch.setenv("SSH_KNOWN_HOSTS", str(cwd / "known_hosts"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(cwd.parent))
    key = cwd / "deploy.pem"
    key.write_text("not read: connect is faked\n")
    key.chmod(0o600)
    monkeypatch.setenv("EC2_KEY", str(key))
    for name in ("ASG_NAME", "SSH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["ghdeploy", "--env-file", str(cwd / "none.env"), *argv])
    (cwd / "none.env").write_text("")
    return cli.main()


def test_verify_outside_a_checkout_is_refused_before_any_connect(
    calls: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    assert _run_cli(monkeypatch, work, "verify") == 2
    err = capsys.readouterr().err
    assert "not a git repository" in err and "--expect SHA" in err  # verify needs no checkout with --expect
    assert calls == []


def test_a_read_only_command_connects_once_ahead_and_uses_it(
    calls: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Any] = []

    def fake_verify_host(conn: Any, api: int, expected: str) -> Any:
        from ghdeploy.version_check import VerifyRow

        seen.append(conn)
        return VerifyRow(host=conn.host.label, expected=expected, running=expected)

    monkeypatch.setattr("ghdeploy.commands.verify.verify_host", fake_verify_host)
    assert _run_cli(monkeypatch, tmp_path, "verify", "--expect", "abcdef1") == 0
    assert calls == ["u@h1"]
    assert len(seen) == 1 and seen[0].pinged
