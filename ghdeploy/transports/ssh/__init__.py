"""The SSH transport: connect to a host, run argv lists, tunnel HTTP to its localhost.

A host needs nothing but sshd: commands are argv lists quoted with `shlex.join`, secrets
travel on stdin, and HTTP to the host's own `localhost:3100` goes through a paramiko
`direct-tcpip` channel, so neither curl on the host nor a local listening port is needed.

By concern: `route` (ssh config, ProxyJump), `hostkeys` (known_hosts, the unknown/changed key
policy), `diagnose` (connect errors as one clear line), `connection` (opening hops, the
Connection), `runner` (one command), `tunnel` (HTTP over channels).

paramiko is imported inside functions only: `ghdeploy --help` loads
these names (through the CLI's imports) and must stay as cheap as `import typer`. Every
third-party exception is translated into SSHError / HostKeyError / RemoteCommandError, whose
message names the host and whose hint says what to do.
"""

from ghdeploy.transports.ssh.connection import Connection, connect
from ghdeploy.transports.ssh.diagnose import load_private_key, translate_connect_error
from ghdeploy.transports.ssh.hostkeys import (
    append_known_host,
    fingerprint,
    known_hosts_line,
    known_hosts_name,
)
from ghdeploy.transports.ssh.route import DEFAULT_PORT, Endpoint, Route, load_ssh_config, resolve_route
from ghdeploy.transports.ssh.runner import CommandResult
from ghdeploy.transports.ssh.settings import SSHSettings

__all__ = [
    "DEFAULT_PORT",
    "CommandResult",
    "Connection",
    "Endpoint",
    "Route",
    "SSHSettings",
    "append_known_host",
    "connect",
    "fingerprint",
    "known_hosts_line",
    "known_hosts_name",
    "load_private_key",
    "load_ssh_config",
    "resolve_route",
    "translate_connect_error",
]
