"""What every step of a host's deploy needs besides the connection, and the phase timer."""

from __future__ import annotations

import getpass
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ghdeploy import remote_commands as rc
from ghdeploy.engine import guardian
from ghdeploy.progress import Reporter
from ghdeploy.results import HostResult, Target
from ghdeploy.waiting import Clock

if TYPE_CHECKING:
    from ghdeploy.registry import RegistryAuth


@dataclass
class Operation:
    """Everything a host step needs besides the connection."""

    layout: rc.RemoteLayout
    reporter: Reporter
    api_port: int
    worker_port: int
    health_timeout: float
    drain_timeout: float
    stop_timeout: int
    auth: RegistryAuth | None = None
    clock: Clock = field(default_factory=Clock)
    cancel: threading.Event = field(default_factory=threading.Event)
    operator: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")
    message: str | None = None
    # Names of throw-away files on the host (the registry credentials); the dry run shows XXXX.
    token: Callable[[int], str] = secrets.token_hex
    # Per host, the compose services whose image is ECR_IMAGE (found in preflight): the only ones
    # pulled and restarted. A host not preflighted gets api and worker.
    host_services: dict[str, list[str]] = field(default_factory=dict)

    # Per host, the target the fleet's pre-pull (engine/prepull.py) made present and its image ID:
    # the host's turn takes it instead of asking docker again (one command less per host in the
    # rolling phase); the switch still checks the container runs exactly that ID.
    present: dict[str, tuple[Target, str]] = field(default_factory=dict)

    # The hosts' guardians (engine/guardian/), by host label, armed when their locks were taken.
    guards: dict[str, guardian.Guard] = field(default_factory=dict)

    def image_services(self, host: str) -> list[str]:
        return self.host_services.get(host) or ["api", "worker"]

    @property
    def heal_budget(self) -> float:
        """How long a host left alone may take to heal itself: the promise made to the operator."""
        return self.drain_timeout + self.stop_timeout + self.health_timeout + 30


@contextmanager
def phase(result: HostResult, name: str, clock: Clock) -> Iterator[None]:
    start = clock.now()
    try:
        yield
    finally:
        result.phases[name] = result.phases.get(name, 0.0) + clock.now() - start
