"""What every SSH connection is opened with (from config: EC2_KEY, SSH_KNOWN_HOSTS, SSH_CONFIG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SSHSettings:
    key_file: Path | None  # EC2_KEY; None -> IdentityFile from ssh config / paramiko defaults
    known_hosts: Path  # SSH_KNOWN_HOSTS; ~/.ssh/known_hosts is read too when different
    accept_new_host_key: bool = False  # the only way an unknown key is ever accepted
    ssh_config: Path | None = None  # an OpenSSH client config, e.g. ~/.ssh/config
    connect_timeout: float = 10.0
    keepalive: int = 5  # seconds between keepalive probes that the server must answer
    dead_peer: float = 10.0  # a probe unanswered this long: the link is dead (noticed within 15 s)
    command_timeout: float = 300.0  # for a run() that names no timeout: no command may hang forever
