"""A command that ends while we still send to it must not cost the whole SSH connection.

The flaky "SSH connection lost ... connection closed" of `status` on the loaded testbed: paramiko
builds a channel's EOF (or stdin data) under the channel's lock and sends it after releasing it.
When the remote command ended in between, the transport thread had already answered sshd's CLOSE
with ours, our EOF arrived after it, and OpenSSH dropped the connection ("ieof packet referred to
nonexistent channel"). A loaded machine opens that gap by chance; here it is opened on purpose: the
wait every user-side send makes for "no key exchange under way" is slowed down for every thread
but the transport's own, so the command has always ended before we send (see channel_io).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghdeploy.hosts import Host, parse_host_list
from ghdeploy.transports import ssh

pytestmark = pytest.mark.integration

DELAY = 0.3  # long enough for `true` to end on the host and sshd to close its channel


class _SlowForCallers(threading.Event):
    """paramiko's clear_to_send: waits of any thread but the transport's take DELAY longer."""

    def __init__(self, transport: threading.Thread, was_set: bool) -> None:
        super().__init__()
        self._transport = transport
        if was_set:
            self.set()

    def wait(self, timeout: float | None = None) -> bool:
        if threading.current_thread() is not self._transport:
            time.sleep(DELAY)
        return super().wait(timeout)


@pytest.fixture
def slow_conn(testbed_env: dict[str, str]) -> Iterator[ssh.Connection]:
    host: Host = parse_host_list(testbed_env["GHTB_HOSTS_LIST"])[0]
    settings = ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=Path(testbed_env["SSH_KNOWN_HOSTS"]))
    with ssh.connect(host, settings) as conn:
        transport = conn._transport
        transport.clear_to_send = _SlowForCallers(transport, transport.clear_to_send.is_set())
        yield conn


def test_eof_after_a_command_that_already_ended_keeps_the_connection(slow_conn: ssh.Connection) -> None:
    for _ in range(3):
        assert slow_conn.run(["true"], timeout=30).rc == 0
        assert slow_conn.alive(), "sshd dropped the connection (EOF sent after our CLOSE)"
    assert slow_conn.run(["echo", "still here"], timeout=30).stdout == "still here\n"


def test_stdin_for_a_command_that_never_reads_it_keeps_the_connection(slow_conn: ssh.Connection) -> None:
    result = slow_conn.run(["sh", "-c", "exit 3"], stdin=b"x" * 1000, timeout=30)
    assert result.rc == 3
    assert slow_conn.alive(), "sshd dropped the connection (data sent after our CLOSE)"
    # A command that does read its stdin still gets all of it, and its EOF.
    data = bytes(range(256)) * 400
    result = slow_conn.run(["sh", "-c", "wc -c"], stdin=data, timeout=30)
    assert result.stdout.strip() == str(len(data))
    assert slow_conn.alive()


def test_logs_stream_of_a_command_that_already_ended_keeps_the_connection(slow_conn: ssh.Connection) -> None:
    stream = slow_conn.stream(["echo", "one line"])
    try:
        assert list(stream.lines()) == [b"one line"]
    finally:
        stream.close()
    # sshd's disconnect arrives after our late EOF: a next command is what notices it.
    assert slow_conn.run(["echo", "still here"], timeout=30).stdout == "still here\n"
    assert slow_conn.alive(), "sshd dropped the connection (EOF sent after our CLOSE)"
