"""Registry credentials on the laptop: a private config.json, never `docker login`; leftovers removed."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from ghdeploy import docker


def test_temporary_login_writes_auths_privately_and_removes_them() -> None:
    with docker.temporary_login("reg.example:5000", "AWS", "tok3n") as env:
        config = Path(env["DOCKER_CONFIG"]) / "config.json"
        data = json.loads(config.read_text())
        assert base64.b64decode(data["auths"]["reg.example:5000"]["auth"]).decode() == "AWS:tok3n"
        assert "credsStore" not in data  # nothing hands the token to a keychain
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert not config.parent.exists()


def test_leftovers_of_a_killed_run_are_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f"{docker.LOGIN_PREFIX}killed"
    killed.mkdir()
    (killed / "pid").write_text(dead.stdout.strip())
    (killed / "config.json").write_text('{"auths": {"r": {"auth": "old"}}}')
    live = tmp_path / f"{docker.LOGIN_PREFIX}live"
    live.mkdir()
    (live / "pid").write_text(str(os.getpid()))
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    assert docker.remove_leftover_logins(tmp_path) == [killed]
    assert not killed.exists() and live.exists() and unrelated.exists()
