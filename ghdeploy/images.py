"""Build and push: the laptop half of the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghdeploy import docker, records, registry
from ghdeploy.config import TAG_RE, Config
from ghdeploy.errors import ConfigError, LocalToolError, OperationFailed
from ghdeploy.gitinfo import GitState, git_state
from ghdeploy.progress import Reporter


@dataclass
class BuildOutcome:
    tag: str
    image: str
    image_id: str
    commit_sha: str
    build_time: str
    refs: list[str]
    dirty: bool
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "image": self.image,
            "image_id": self.image_id,
            "commit_sha": self.commit_sha,
            "build_time": self.build_time,
            "refs": list(self.refs),
            "dirty": self.dirty,
            "seconds": self.seconds,
        }


@dataclass
class PushOutcome:
    tag: str
    image: str
    digest: str
    refs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "image": self.image,
            "digest": self.digest,
            "refs": list(self.refs),
            "seconds": self.seconds,
        }


def validate_tag(tag: str, source: str = "--tag") -> str:
    if not TAG_RE.fullmatch(tag):
        raise ConfigError(
            f"{source} {tag!r} is not a valid docker tag",
            "use letters, digits, '_', '.', '-' (not first), at most 128 characters",
        )
    return tag


def default_tag(config: Config, tag_flag: str | None, git: GitState | None) -> str:
    """--tag, else IMAGE_TAG, else the short SHA of HEAD."""
    if tag_flag:
        return validate_tag(tag_flag)
    if config.get("IMAGE_TAG"):
        return validate_tag(config.text("IMAGE_TAG"), "IMAGE_TAG")
    if git is None:
        raise ConfigError("no tag given and no git checkout to take one from", "pass --tag or set IMAGE_TAG")
    return git.short_sha


def build_time_now() -> str:
    return records.now_iso()


def planned_build(config: Config, cwd: Path, tag: str | None, allow_dirty: bool) -> tuple[str, GitState]:
    """The tag a build here would get, after the checks it makes before docker (also for dry runs)."""
    if tag:
        validate_tag(tag)
    git = git_state(cwd)
    if git.dirty and not allow_dirty:
        shown = ", ".join(git.dirty_files[:5]) + (" ..." if len(git.dirty_files) > 5 else "")
        raise ConfigError(
            f"the working tree has uncommitted changes ({len(git.dirty_files)}: {shown})",
            "commit or stash them (COMMIT_SHA would not describe the image), or pass --allow-dirty",
        )
    if not (cwd / "Dockerfile").is_file():
        raise ConfigError(f"no Dockerfile in {cwd}", "run ghdeploy from the directory that holds the app's Dockerfile")
    chosen = default_tag(config, tag, git)
    if git.dirty and not tag and not config.get("IMAGE_TAG"):
        chosen = f"{git.short_sha}-dirty"
    return chosen, git


def build_image(
    config: Config,
    cwd: Path,
    reporter: Reporter,
    *,
    tag: str | None = None,
    platform: str | None = None,
    allow_dirty: bool = False,
) -> BuildOutcome:
    started = time.monotonic()
    if not platform:
        platform = config.gh_platform
    source = "--platform" if config.sources.get("GH_PLATFORM", "").startswith("flag") else "GH_PLATFORM"
    if "," in platform:
        raise ConfigError(
            f"{source} {platform} asks for a multi-arch image; ghdeploy builds one platform with `docker build`",
            f"build and push it with `docker buildx build --platform {platform} -t {config.image_name}:TAG --push .`, "
            "then `ghdeploy deploy --deploy-only --tag TAG` (preflight checks it holds every host's architecture)",
        )
    chosen, git = planned_build(config, cwd, tag, allow_dirty)
    if git.dirty:
        reporter.warn(f"building from a dirty tree ({len(git.dirty_files)} changed files); tag {chosen}")
    docker.ensure_engine()
    image = config.image_name
    refs = [f"{image}:{chosen}", f"{image}:latest"]
    build_args = {"COMMIT_SHA": git.sha, "BUILD_TIME": build_time_now(), "IMAGE_TAG": chosen}
    reporter.step(None, f"building {refs[0]} from {git.short_sha} for {platform} ({source})")
    result = docker.build(cwd, refs, build_args, reporter, platform=platform)
    built = docker.image_platform(refs[0])
    if built and not _same_platform(built, platform):
        # The legacy builder (no buildx) ignores --platform for an image FROM scratch: say so
        # here rather than push an image that preflight would refuse, or worse, crash on hosts.
        raise LocalToolError(
            f"docker built {refs[0]} for {built}, not the {platform} that {source} asked for",
            f"build with buildx (Docker Desktop, or the docker-buildx plugin), or base the image on one for {platform}",
        )
    reporter.info(f"built {refs[0]} ({result.image_id[:19]}) for {built or platform}")
    return BuildOutcome(
        tag=chosen,
        image=image,
        image_id=result.image_id,
        commit_sha=git.sha,
        build_time=build_args["BUILD_TIME"],
        refs=refs,
        dirty=git.dirty,
        seconds=round(time.monotonic() - started, 3),
    )


def push_image(config: Config, cwd: Path, reporter: Reporter, *, tag: str | None = None) -> PushOutcome:
    started = time.monotonic()
    git: GitState | None = None
    if not tag and not config.get("IMAGE_TAG"):
        git = git_state(cwd)
    chosen = default_tag(config, tag, git)
    docker.ensure_engine()
    image = config.image_name
    ref, latest = f"{image}:{chosen}", f"{image}:latest"
    if docker.image_id(ref) is None:
        raise ConfigError(f"no local image {ref}", f"build it first: ghdeploy build --tag {chosen}")
    region = config.text("AWS_REGION")
    reporter.step(None, f"checking ECR repository {config.repository}")
    registry.check_repository(region, config.repository)
    auth = registry.login_once(region, config.registry)
    reporter.step(None, f"logging in to {config.registry}")
    with docker.temporary_login(auth.registry, auth.username, auth.password) as env:
        digest = docker.push(ref, env, reporter)
        reporter.info(f"pushed {ref} ({digest})")
    # :latest must name what we pushed now. Moving it in the registry (not `docker push :latest`)
    # means another build on the same engine re-tagging :latest meanwhile cannot slip in.
    reporter.step(None, f"tagging {digest} as {latest}")
    latest_digest = registry.tag_manifest(auth, config.repository, digest, "latest")
    reporter.info(f"pushed {latest}")
    if latest_digest != digest:
        raise OperationFailed(f":latest was pushed as {latest_digest}, not {digest}", "push again")
    return PushOutcome(
        tag=chosen, image=image, digest=digest, refs=[ref, latest], seconds=round(time.monotonic() - started, 3)
    )


def _same_platform(built: str, wanted: str) -> bool:
    """linux/arm64 matches linux/arm64/v8; os and architecture must agree, a variant only if both name one."""
    b, w = built.split("/"), wanted.split("/")
    return b[:2] == w[:2] and (len(b) < 3 or len(w) < 3 or b[2] == w[2])
