"""`build`, `push`, `deploy`, `rollback`: the commands that make and ship a release."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ghdeploy.cli.app import app, env_of
from ghdeploy.cli.options import (
    AcceptOpt,
    AllowDirtyOpt,
    BatchOpt,
    DryRunOpt,
    HostOpt,
    PlatformOpt,
    ReasonOpt,
    TagOpt,
    switch,
    value,
)
from ghdeploy.cli.runtime import finish, host_options, load, reporter
from ghdeploy.cli.signals import Interrupts
from ghdeploy.environment import Environment
from ghdeploy.errors import ConfigError

if TYPE_CHECKING:
    from ghdeploy.progress import Reporter
    from ghdeploy.waiting import CancelToken

TAG_FLAGS = {"IMAGE_TAG": "--tag", "GH_PLATFORM": "--platform"}


def _change_fleet(
    env: Environment, command: str, run: Callable[..., Any], host: list[str] | None, accept: bool, **fleet: Any
) -> None:
    """Deploy or rollback: `run(reporter, cancel, hosts_opts=..., **fleet)` with Ctrl-C as a cancel
    event (a host mid-switch is rolled back, not killed), then the report and its exit code."""
    from ghdeploy import render

    with reporter(env) as progress, Interrupts(progress) as cancel:
        report = run(progress, cancel, hosts_opts=host_options(host, accept), **fleet)
    finish(render.deploy_report(report, env, command))


@app.command()
def build(
    ctx: typer.Context, tag: TagOpt = None, platform: PlatformOpt = None, allow_dirty: AllowDirtyOpt = False
) -> None:
    """Build the image from ./Dockerfile with COMMIT_SHA, BUILD_TIME, IMAGE_TAG; tag :TAG and :latest."""
    env = env_of(ctx)
    config = load(env, "build", {"IMAGE_TAG": tag, "GH_PLATFORM": platform}, TAG_FLAGS)
    from ghdeploy import render
    from ghdeploy.commands.build import build as run_build

    with reporter(env) as progress:
        outcome = run_build(config, Path.cwd(), progress, tag=tag, platform=platform, allow_dirty=allow_dirty)
    render.build_result(outcome, env)


@app.command()
def push(ctx: typer.Context, tag: TagOpt = None) -> None:
    """Log in to ECR (token from boto3, on stdin) and push :TAG and :latest."""
    env = env_of(ctx)
    config = load(env, "push", {"IMAGE_TAG": tag}, {"IMAGE_TAG": "--tag"})
    from ghdeploy import render
    from ghdeploy.commands.push import push as run_push

    with reporter(env) as progress:
        outcome = run_push(config, Path.cwd(), progress, tag=tag)
    render.push_result(outcome, env)


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  ghdeploy deploy --dry-run                 what would happen on each host (-v: the exact commands)\n"
        "  ghdeploy deploy -m 'fix login'            build, push, deploy every host, verify\n"
        "  ghdeploy deploy --deploy-only --tag 1a2b3c4 --host ec2-user@10.0.1.5\n"
        "\b\nA host whose new image fails its health check is rolled back to the exact image it ran\n"
        "before, and the rollout stops there. Ctrl-C is safe: a host mid-switch is rolled back."
    )
)
def deploy(
    ctx: typer.Context,
    tag: TagOpt = None,
    push_only: Annotated[bool, switch("--push-only", help="Build and push, touch no host.")] = False,
    deploy_only: Annotated[
        bool, switch("--deploy-only", help="Skip build and push; the tag must be in the registry.")
    ] = False,
    host: HostOpt = None,
    batch: BatchOpt = 1,
    dry_run: DryRunOpt = False,
    message: ReasonOpt = None,
    accept_new_host_key: AcceptOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    platform: PlatformOpt = None,
) -> None:
    """Build, push, deploy every host (one at a time), then verify. Rolls a failed host back."""
    if push_only and deploy_only:
        raise ConfigError(
            "--push-only and --deploy-only exclude each other", "pick one, or neither for the whole pipeline"
        )
    env = env_of(ctx)
    mode = "push-only" if push_only else "deploy-only" if deploy_only else "full"
    config = load(
        env, "push" if push_only else "deploy", {"IMAGE_TAG": tag, "GH_PLATFORM": platform}, TAG_FLAGS, only=host
    )
    from ghdeploy.commands.deploy import deploy as run_deploy

    def run(progress: "Reporter", cancel: "CancelToken", **fleet: Any) -> Any:
        return run_deploy(
            config,
            Path.cwd(),
            progress,
            cancel,
            tag=tag,
            mode=mode,
            allow_dirty=allow_dirty,
            platform=platform,
            **fleet,
        )

    _change_fleet(env, "deploy", run, host, accept_new_host_key, batch=batch, dry_run=dry_run, message=message)


@app.command(
    epilog=(
        "\b\nExamples:\n"
        "  ghdeploy rollback --dry-run       which image each host would go back to\n"
        "  ghdeploy rollback -m 'bad release'\n"
        "  ghdeploy rollback --to 1a2b3c4    a tag that is in the registry"
    )
)
def rollback(
    ctx: typer.Context,
    to: Annotated[
        str | None, value("--to", metavar="TAG", help="Tag to go back to (default: the image before the last deploy).")
    ] = None,
    host: HostOpt = None,
    batch: BatchOpt = 1,
    dry_run: DryRunOpt = False,
    message: ReasonOpt = None,
    accept_new_host_key: AcceptOpt = False,
) -> None:
    """Put back the image that ran before the last deploy (from each host's history), or --to TAG."""
    env = env_of(ctx)
    # --to '' is a mistake, not "no --to": it is checked as the tag it claims to be.
    config = (
        load(env, "rollback --to", {"IMAGE_TAG": to}, {"IMAGE_TAG": "--to"}, only=host)
        if to is not None
        else load(env, "rollback", only=host)
    )
    from ghdeploy.commands.rollback import rollback as run_rollback

    def run(progress: "Reporter", cancel: "CancelToken", **fleet: Any) -> Any:
        return run_rollback(config, progress, cancel, to_tag=to, **fleet)

    _change_fleet(env, "rollback", run, host, accept_new_host_key, batch=batch, dry_run=dry_run, message=message)
