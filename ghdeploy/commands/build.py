"""`ghdeploy build`: docker build from ./Dockerfile, tagged :TAG and :latest."""

from __future__ import annotations

from pathlib import Path

from ghdeploy.config import Config
from ghdeploy.images import BuildOutcome, build_image
from ghdeploy.progress import Reporter


def build(
    config: Config, cwd: Path, reporter: Reporter, *, tag: str | None, platform: str | None, allow_dirty: bool
) -> BuildOutcome:
    return build_image(config, cwd, reporter, tag=tag, platform=platform, allow_dirty=allow_dirty)
