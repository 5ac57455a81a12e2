"""Shared fixtures. Integration tests need the testbed (scripts/testbed up).

Without it they skip locally, but with CI=true a missing testbed is a failure, never a skip.
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def testbed_env() -> dict[str, str]:
    """The testbed's settings (ECR_REGISTRY, EC2_KEY, SSH_KNOWN_HOSTS, GHTB_HOSTS_LIST, ...)."""
    if not TESTBED_ENV.exists():
        msg = f"testbed not running ({TESTBED_ENV} missing): run `scripts/testbed up`"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return _read_env(TESTBED_ENV)
