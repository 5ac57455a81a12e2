"""What the local git checkout says: the commit being built and whether the tree is clean."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ghdeploy.errors import LocalToolError


@dataclass(frozen=True)
class GitState:
    sha: str
    short_sha: str
    dirty_files: list[str]

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_files)


def _git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LocalToolError(
            f"{cwd} is not a git repository with a commit ({proc.stderr.strip() or 'git failed'})",
            "run ghdeploy from the app's git checkout (COMMIT_SHA comes from HEAD)",
        )
    return proc.stdout


def git_toplevel(cwd: Path) -> Path:
    """The root of the checkout `cwd` is in."""
    return Path(_git(["rev-parse", "--show-toplevel"], cwd).strip())


def git_state(cwd: Path) -> GitState:
    if shutil.which("git") is None:
        raise LocalToolError("git is not installed", "install git; ghdeploy reads the commit from HEAD")
    sha = _git(["rev-parse", "--verify", "HEAD"], cwd).strip()
    short = _git(["rev-parse", "--short", "HEAD"], cwd).strip()
    # Untracked files count: they would be sent in the build context and change the image.
    status = _git(["status", "--porcelain", "--untracked-files=normal"], cwd)
    dirty = [line[3:] for line in status.splitlines() if line.strip()]
    return GitState(sha=sha, short_sha=short, dirty_files=dirty)
