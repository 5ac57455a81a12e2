"""The Docker Engine API through the SSH connection (direct-streamlocal to the host's socket),
against a real testbed host (h1): it reaches the engine the host's own docker CLI uses, it reads
exactly what the CLI reads, a deploy uses it, and when the socket cannot be used the CLI takes
over with the same answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import paramiko
import pytest

from ghdeploy import remote_commands as rc
from ghdeploy.docker_api import DockerAPI
from ghdeploy.hosts import parse_host_list
from ghdeploy.snapshot import Snapshot, local_image, read_snapshot
from ghdeploy.transports import ssh
from ghdeploy.transports.base import CommandResult
from ghdeploy.transports.http11 import Client
from ghdeploy.transports.ssh import streamlocal
from tests.integration.conftest import Cli, api_image_id, commit, host_docker

pytestmark = pytest.mark.integration

H1 = "root@10.77.1.2"
H1_SOCKET = "/run/ghtb/h1/docker.sock"  # what sshd's SetEnv DOCKER_HOST names for h1
LAYOUT = rc.RemoteLayout(app_dir="/opt/ghosthands", compose_file="/opt/ghosthands/docker-compose.yml")


class CliOnly:
    """The same connection with the Engine API hidden: every read goes through the docker CLI."""

    def __init__(self, conn: ssh.Connection) -> None:
        self.conn = conn
        self.host = conn.host

    def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return self.conn.run(argv, stdin=stdin, timeout=timeout)

    def check(self, argv: list[str], *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        return self.conn.check(argv, stdin=stdin, timeout=timeout)

    def http_client(self, timeout: float = 5.0) -> Client:
        return self.conn.http_client(timeout)

    def docker_api(self, timeout: float = 30.0, probe: str | None = None) -> DockerAPI | None:
        return None


@pytest.fixture
def h1(cli_factory: Callable[..., Cli], clean_hosts: Callable[..., None]) -> Iterator[Cli]:
    clean_hosts("h1")
    yield cli_factory(EC2_HOST=H1, HEALTH_TIMEOUT="8")
    clean_hosts("h1")


@pytest.fixture
def conn(testbed_env: dict[str, str]) -> Iterator[ssh.Connection]:
    settings = ssh.SSHSettings(key_file=Path(testbed_env["EC2_KEY"]), known_hosts=Path(testbed_env["SSH_KNOWN_HOSTS"]))
    (host,) = parse_host_list(H1)
    with ssh.connect(host, settings) as connection:
        yield connection


def same(a: Snapshot, b: Snapshot) -> None:
    assert asdict(a) == asdict(b)


def test_the_api_reads_what_the_cli_reads_and_a_deploy_uses_it(h1: Cli, app_repo: Path, conn: ssh.Connection) -> None:
    commit(app_repo, "v1")
    proc = h1("-v", "deploy")
    assert proc.returncode == 0, proc.stderr
    # The deploy read the host through the engine's API, on h1's own engine (not the machine's).
    assert f"GET {H1_SOCKET} /containers/json?all=1" in proc.stderr
    assert "docker inspect --type container" not in proc.stderr  # the CLI's way (inspect_app_containers)
    image = api_image_id("h1")
    # A stopped targeted worker too: its whole configuration is read (the spec a replacement needs).
    host_docker(
        "h1", "create", "--name", "gh-worker-api0001", "--label", "gh.role=targeted-worker",
        "--label", "gh.worker_id=api0001", "--label", "gh.status_port=3199", "-e", "QUEUE=gpu", image,
    )  # fmt: skip

    api = conn.docker_api()
    assert api is not None and api.socket == H1_SOCKET
    via_api = read_snapshot(conn, LAYOUT)
    via_cli = read_snapshot(CliOnly(conn), LAYOUT)
    assert set(via_api.services) >= {"api", "worker"}
    assert [t.spec.name for t in via_api.targeted] == ["gh-worker-api0001"]
    assert via_api.docker_root == "/var/lib/ghtb/h1/docker"
    same(via_api, via_cli)
    assert local_image(conn, image) == local_image(CliOnly(conn), image)
    assert local_image(conn, "10.88.0.1:5131/ghosthands:no-such-tag") is None


def test_a_socket_that_cannot_be_used_hands_over_to_the_cli(h1: Cli, app_repo: Path, conn: ssh.Connection) -> None:
    commit(app_repo, "v1")
    h1.json("deploy")
    with pytest.raises(paramiko.ChannelException):
        streamlocal.open_channel(conn._transport, "/run/ghtb/h1/no-such.sock", timeout=10)
    expected = read_snapshot(CliOnly(conn), LAYOUT)
    # As if the host's DOCKER_HOST named a socket sshd cannot open (permissions, a stale path).
    conn._docker_probed, conn._docker_socket = True, "/run/ghtb/h1/no-such.sock"
    same(read_snapshot(conn, LAYOUT), expected)
    assert conn.docker_api() is None  # turned off for the rest of the connection's life
    assert conn.run(["true"]).rc == 0  # and the connection itself is unharmed
