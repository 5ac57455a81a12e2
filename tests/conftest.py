"""Shared fixtures. Integration tests need the testbed (scripts/testbed up).

Without it they skip locally, but with CI=true a missing testbed is a failure, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

TESTBED_ENV = Path(os.environ.get("GHTB_DIR", "/var/lib/ghtb")) / "env"


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


LOCK_FILE = Path("/run/ghtb.lock")


@pytest.fixture(scope="session")
def testbed_lock() -> Iterator[None]:
    """Hold the machine's one testbed for this session: a second run waits here, saying so.

    scripts/test and the demo take the same lock themselves and set GHTB_LOCK_HELD=1.
    """
    if os.environ.get("GHTB_LOCK_HELD") == "1" or not LOCK_FILE.parent.is_dir():
        yield
        return
    with open(LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(f"{LOCK_FILE}.holder")
            who = holder.read_text().strip() if holder.exists() else "unknown"
            print(f"\ntests: another run is using the testbed ({who}); waiting for it", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        Path(f"{LOCK_FILE}.holder").write_text(f"pytest pid {os.getpid()} in {os.getcwd()}, since {since}\n")
        os.environ["GHTB_LOCK_HELD"] = "1"  # scripts/testbed reset-host etc. run under our lock
        try:
            yield
        finally:
            os.environ.pop("GHTB_LOCK_HELD", None)


@pytest.fixture(scope="session")
def testbed_env(testbed_lock: None) -> Iterator[dict[str, str]]:
    """The testbed's settings (ECR_REGISTRY, EC2_KEY, SSH_KNOWN_HOSTS, GHTB_HOSTS_LIST, ...).

    At the end of the session its hosts are reset: tests clean a host when they start, not when
    they end, and what one leaves (a targeted worker ghdeploy refuses to carry over, on purpose)
    would stop the next `scripts/demo` in preflight.
    """
    if not TESTBED_ENV.exists():
        msg = f"testbed not running ({TESTBED_ENV} missing): run `scripts/testbed up`"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    env = _read_env(TESTBED_ENV)
    # Its registry stands in for ECR: the ECR token may go there only by the operator's choice in
    # the process environment (ghdeploy refuses ECR_REGISTRY_OVERRIDE in an env file). Set here
    # too, for a testbed env file written before the key existed.
    env.setdefault("ECR_REGISTRY_OVERRIDE", "1")
    yield env
    import subprocess

    testbed = Path(__file__).resolve().parents[1] / "scripts" / "testbed"
    for address in filter(None, env.get("GHTB_HOSTS_LIST", "").split(",")):
        octets = address.rsplit("@", 1)[-1].split(".")  # root@10.77.N.2 is the namespace hN
        if len(octets) == 4:
            subprocess.run([str(testbed), "reset-host", f"h{octets[2]}"], capture_output=True, timeout=120, check=False)
