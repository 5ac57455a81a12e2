"""`ghdeploy deploy`: build, push, then the rolling deploy over the fleet, then verify."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ghdeploy import hostops, locks, registry
from ghdeploy.commands.common import operation, resolve_hosts
from ghdeploy.commands.prune import after_deploy as prune_after_deploy
from ghdeploy.config import Config
from ghdeploy.engine.fleet import Fleet, HostOptions, open_fleet
from ghdeploy.engine.plan import plan_host
from ghdeploy.engine.prepull import pull_then_roll
from ghdeploy.errors import ConfigError, LocalToolError, PreflightError
from ghdeploy.gitinfo import git_state
from ghdeploy.hostfit import MachineFacts, fit_problems
from ghdeploy.hosts import Host
from ghdeploy.images import build_image, default_tag, planned_build, push_image, validate_tag
from ghdeploy.progress import Reporter
from ghdeploy.results import Action, DeployReport, FleetResult, HostResult, Mode, Result, Target
from ghdeploy.version_check import verify_host
from ghdeploy.waiting import CancelToken


def image_check(
    config: Config, auth: registry.RegistryAuth, digest: str | None, label: str, reporter: Reporter
) -> Callable[[dict[str, MachineFacts]], tuple[dict[str, str], str | None]] | None:
    """The preflight check of the hosts against the image: its platforms and size, from the registry."""
    if digest is None:  # a dry run of a tag not pushed yet: nothing to compare
        return None
    images = registry.image_platforms(auth, config.repository, digest)
    reporter.info(f"{label} is for {', '.join(i.name for i in images) or 'no platform'}")

    def check(facts: dict[str, MachineFacts]) -> tuple[dict[str, str], str | None]:
        return fit_problems(facts, images, label, config.disk_reserve_mb)

    return check


def already_current(fleet: Fleet, target: Target, reporter: Reporter) -> FleetResult | None:
    """A succeeded result touching nothing when every host runs `target`'s digest (api, worker and
    targeted workers, all running); None when any host needs the deploy."""
    if not target.digest:
        return None
    results: list[HostResult] = []
    for label in fleet.order:
        snapshot = hostops.read_snapshot(fleet.remotes[label], fleet.layout)
        services = list(snapshot.services.values())
        if "api" not in snapshot.services or any(s.state != "running" for s in services):
            return None
        images = [s.image for s in services] + [w.image for w in snapshot.targeted if w.running]
        if any(image.digest != target.digest for image in images):
            return None
        results.append(
            HostResult(
                host=label,
                result=Result.SUCCEEDED,
                from_image=snapshot.app_image,
                target=target,
                image_id=images[0].image_id,
                notes=[f"already runs {target.label} ({target.digest[:19]}); nothing was changed"],
            )
        )
    for result in results:
        reporter.step(result.host, f"already runs {target.label}")
    return FleetResult(action=Action.DEPLOY, target=target, hosts=results)


def deploy(
    config: Config,
    cwd: Path,
    reporter: Reporter,
    cancel: threading.Event,
    *,
    tag: str | None,
    mode: Mode | str,
    allow_dirty: bool = False,
    platform: str | None = None,
    hosts_opts: HostOptions | None = None,
    batch: int = 1,
    dry_run: bool = False,
    message: str | None = None,
    expect_sha: str | None = None,
    operator: str | None = None,  # who the locks and host history name (default: user@host)
    skip_current: bool = False,  # every host already runs the tag's digest: succeed, change nothing
    tag_source: str | None = None,  # where `tag` came from, for a missing-tag message (serve: the webhook)
) -> DeployReport:
    opts = hosts_opts or HostOptions()
    timings: dict[str, float] = {}
    if tag:
        validate_tag(tag)
    hosts: list[Host] = []
    mode = Mode(mode)
    if mode != Mode.PUSH_ONLY:
        hosts = resolve_hosts(config, opts, reporter)
    report = DeployReport(tag=tag or "", timings=timings)

    builds = mode in (Mode.FULL, Mode.PUSH_ONLY)
    if builds:
        built = _build_and_push(
            config, cwd, reporter, report, tag=tag, dry_run=dry_run, allow_dirty=allow_dirty, platform=platform
        )
        expect_sha = expect_sha or built
        if mode == Mode.PUSH_ONLY:
            if dry_run:
                report.plan = []
            return report
    else:
        report.tag = _tag_to_deploy(config, cwd, tag)

    t = time.monotonic()
    reporter.step(None, f"resolving {config.repository}:{report.tag} in {config.registry}")
    auth = registry.login_once(config.text("AWS_REGION"), config.registry)
    if builds and dry_run:
        # The tag need not exist yet: the build and push of the real run would create it.
        digest = registry.resolve_digest(auth, config.repository, report.tag)
    else:
        source = (
            tag_source
            or config.flag_of("IMAGE_TAG")
            or ("IMAGE_TAG" if config.get("IMAGE_TAG") else "HEAD's short SHA")
        )
        digest = registry.require_digest(auth, config.repository, report.tag, source, config.aws_region)
    if report.push and report.push.digest != digest:
        raise PreflightError(f"the registry says {report.tag} is {digest}, but we pushed {report.push.digest}")
    target = Target(ref=f"{config.image_name}:{report.tag}", label=f"{config.repository}:{report.tag}", digest=digest)
    reporter.info(f"{target.label} is {digest or 'not in the registry yet'}")
    op = operation(config, reporter, cancel, message)
    op.auth = auth
    if operator:
        op.operator = operator
    lock = None if dry_run else locks.lock_info(op.operator, "deploy", report.tag, message)
    fleet = open_fleet(config, hosts, opts, reporter, lock, image_check(config, auth, digest, target.label, reporter))
    op.host_services = {label: facts.image_services for label, facts in fleet.facts.items()}
    op.guards = fleet.guards
    if lock is not None and isinstance(cancel, CancelToken):
        cancel.arm()  # from here an interrupt stops at a safe point instead of at once
    timings["preflight"] = time.monotonic() - t
    try:
        if dry_run:
            report.plan = [plan_host(op, fleet.remotes[label], target, "deploy") for label in fleet.order]
            return report
        t = time.monotonic()
        current = already_current(fleet, target, reporter) if skip_current else None
        if current is not None:
            report.fleet = current
            return report
        # Every host pulls at once first; the rolling switch then finds the image present.
        t = time.monotonic()
        report.fleet, timings["pull"] = pull_then_roll(
            op, fleet.remotes, fleet.order, lambda _label: target, batch, pull_limit=config.number("PULL_PARALLEL")
        )
        timings["deploy"] = time.monotonic() - t - timings["pull"]
        t = time.monotonic()
        prune_after_deploy(config, fleet, report.fleet, reporter)
        timings["prune"] = time.monotonic() - t
        if report.fleet.succeeded and mode == Mode.FULL and expect_sha:
            t = time.monotonic()
            reporter.step(None, "verifying /health/version on every host")
            report.verify = [verify_host(fleet.conns[label], op.api_port, expect_sha) for label in fleet.order]
            timings["verify"] = time.monotonic() - t
    finally:
        fleet.close()
    return report


def _build_and_push(
    config: Config,
    cwd: Path,
    reporter: Reporter,
    report: DeployReport,
    *,
    tag: str | None,
    dry_run: bool,
    allow_dirty: bool,
    platform: str | None,
) -> str | None:
    """The laptop half: build and push (a dry run only checks what the build would). Returns the
    commit the hosts should then report, when a build ran."""
    if dry_run:
        # Same checks as the build (clean tree, Dockerfile), so the plan is what the real run would do.
        report.tag, _ = planned_build(config, cwd, tag, allow_dirty)
        reporter.info(f"dry run: would build {config.image_name}:{report.tag} and push it and :latest")
        return None
    t = time.monotonic()
    report.build = build_image(config, cwd, reporter, tag=tag, platform=platform, allow_dirty=allow_dirty)
    report.timings["build"] = time.monotonic() - t
    report.tag = report.build.tag
    t = time.monotonic()
    report.push = push_image(config, cwd, reporter, tag=report.tag)
    report.timings["push"] = time.monotonic() - t
    return report.build.commit_sha


def _tag_to_deploy(config: Config, cwd: Path, tag: str | None) -> str:
    """--deploy-only: --tag, else IMAGE_TAG, else HEAD's short SHA."""
    git = None
    if not tag and not config.get("IMAGE_TAG"):
        try:
            git = git_state(cwd)
        except LocalToolError as exc:
            raise ConfigError(
                f"no tag given, and the tag cannot default to HEAD's short SHA: {exc.message}",
                "pass --tag TAG (or set IMAGE_TAG), or run from the app's git checkout",
            ) from None
    return default_tag(config, tag, git)
