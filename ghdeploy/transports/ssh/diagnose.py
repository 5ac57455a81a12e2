"""Everything paramiko or the socket layer raises while connecting, as one clear SSHError.

The message names the host (and the jump host, when a hop failed); the hint says what to do.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from ghdeploy.errors import SSHError
from ghdeploy.transports.ssh.route import Endpoint, Route, hop_prefix, keys_text
from ghdeploy.transports.ssh.settings import SSHSettings

if TYPE_CHECKING:
    import paramiko


def translate_connect_error(exc: BaseException, endpoint: Endpoint, route: Route, settings: SSHSettings) -> SSHError:
    """One clear line (and a hint) for whatever paramiko or the socket layer raised."""
    import paramiko

    label = route.target.label
    prefix = hop_prefix(endpoint, route)
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
            f"is sshd running on the host, and is {endpoint.port} the right port (EC2_HOST=user@host:port)?",
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
            f"{prefix}authentication failed for user {endpoint.user!r} with key {keys_text(endpoint)}",
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


def load_private_key(path: Path, endpoint: Endpoint, route: Route) -> paramiko.PKey:
    """Load a key file ourselves so a bad one fails with a clear reason, before any network."""
    import paramiko

    label = route.target.label
    prefix = hop_prefix(endpoint, route)
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
