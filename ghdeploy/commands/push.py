"""`ghdeploy push`: ECR login (token on stdin) and push :TAG and :latest."""

from __future__ import annotations

from pathlib import Path

from ghdeploy.config import Config
from ghdeploy.images import PushOutcome, push_image
from ghdeploy.progress import Reporter


def push(config: Config, cwd: Path, reporter: Reporter, *, tag: str | None) -> PushOutcome:
    return push_image(config, cwd, reporter, tag=tag)
