"""Import paramiko without invoke, unless the ssh config needs it.

paramiko.config imports invoke (a task runner: yaml, asyncio, unittest.mock...) at import
time, only to evaluate `Match exec "command"` blocks of an ssh config. That is ~55 ms of every
`ghdeploy verify`, about as long as the SSH handshake itself. When the ssh config in use has
no `Match exec` (and includes no other file that might), paramiko is imported with `invoke`
marked absent, exactly as on a machine without invoke; paramiko then raises its own clear
error if a `Match exec` is ever evaluated. Nothing else in paramiko uses invoke.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

_LOCK = threading.Lock()
_NEEDS_INVOKE = re.compile(r"^\s*(match\b.*\bexec\b|include\b)", re.IGNORECASE | re.MULTILINE)


def config_needs_invoke(text: str) -> bool:
    """Whether an ssh config may evaluate `Match exec` (directly or through an Include)."""
    return bool(_NEEDS_INVOKE.search(text))


def import_paramiko(ssh_config: Path | None) -> None:
    """Import paramiko once, leaving invoke out when `ssh_config` cannot need it."""
    if "paramiko" in sys.modules:
        return
    with _LOCK:
        if "paramiko" in sys.modules:
            return
        if "invoke" in sys.modules or _needs_invoke(ssh_config):
            import paramiko

            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` -> ImportError
        try:
            import paramiko  # noqa: F401
        finally:
            # Only paramiko's own import saw it missing; anyone else may import invoke later.
            del sys.modules["invoke"]


def _needs_invoke(ssh_config: Path | None) -> bool:
    if ssh_config is None:
        return False
    try:
        text = ssh_config.expanduser().read_text(errors="replace")
    except OSError:
        # Unreadable or missing: load_ssh_config reports it (or ignores a missing one).
        return False
    return config_needs_invoke(text)
