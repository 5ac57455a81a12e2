"""The TCP connection under an SSH connection's first hop.

Its own module, outside the ssh package and free of paramiko, so that a read-only command can
start it before either is imported (engine/preconnect.py): sshd spends ~10 ms between accepting a connection and
sending its banner (it re-executes itself), time that then overlaps the import.
"""

from __future__ import annotations

import contextlib
import socket


def tcp_connect(hostname: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to hostname:port, with TCP_NODELAY on from the first byte.

    The SSH handshake sends small packets back to back (NEWKEYS then the service request, the
    auth request...). With Nagle on, each second packet waits until the first is ACKed, and
    delayed ACKs stretch that to ~40 ms: measured on the testbed, a connect took 135-185 ms with
    TCP_NODELAY set after the handshake and 55-95 ms with it set before. Afterwards the same
    holds for every channel open and HTTP request of a /health poll.
    """
    sock = socket.create_connection((hostname, port), timeout=timeout)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
