"""`serve` and `notify`: the webhook receiver and the one line CI runs to reach it."""

from pathlib import Path
from typing import Annotated

import typer

from ghdeploy import grammar
from ghdeploy.cli.app import app, env_of
from ghdeploy.cli.options import TagOpt, switch, value
from ghdeploy.cli.runtime import finish, load, reporter


@app.command(
    epilog=(
        "\b\nNeeds the server extra: pip install 'ghdeploy[server]'. Keys (environment or env file, never flags):\n"
        "  DEPLOY_WEBHOOK_SECRET, DEPLOY_API_TOKEN (required), DATABASE_URL (default ./ghdeploy-serve.db),\n"
        "  DEPLOY_CALLBACK_URL, WEBHOOK_MAX_AGE (300 s), plus the deploy keys (EC2_HOST, EC2_KEY, ECR_*, ...).\n"
        "Put it behind TLS (a reverse proxy or load balancer). SIGTERM: stops taking webhooks and lets a\n"
        "running deploy reach a safe point (a host mid-switch is rolled back)."
    )
)
def serve(
    ctx: typer.Context,
    listen: Annotated[
        str,
        value(
            "--listen",
            metavar="HOST:PORT",
            parse=grammar.listen_address,
            help="Address to listen on (plain HTTP).",
        ),
    ] = "127.0.0.1:8080",
) -> None:
    """Webhook receiver: CI's signed deploy_ready -> fleet deploy (one at a time), recorded, reported back."""
    from ghdeploy.commands import serve as serve_command

    env = env_of(ctx)
    serve_command.require_extra()
    config = load(env, "serve")
    finish(
        serve_command.serve(
            config,
            Path.cwd(),
            listen,
            verbose=env.verbose,
            quiet=env.quiet,
            environ=env.environ,
            log_stream=env.stderr,
        )
    )


@app.command(
    epilog=(
        "\b\nThe one line for CI (after the image is pushed):\n"
        '  ghdeploy notify --url https://deploy.example.com --tag "$IMAGE_TAG" --wait\n'
        "Signs with DEPLOY_WEBHOOK_SECRET; --wait reads the deploy with DEPLOY_API_TOKEN (both from the\n"
        "environment). Exit 0 accepted (and, with --wait, succeeded); 1 refused or failed; 2 bad input."
    )
)
def notify(
    ctx: typer.Context,
    url: Annotated[
        str,
        value("--url", metavar="URL", parse=grammar.http_url, help="The receiver (base URL or the webhook URL)."),
    ],
    tag: TagOpt = None,
    environment: Annotated[
        str | None,
        value(
            "--environment",
            metavar="ENV",
            parse=grammar.choice(*grammar.COMPOSE_FILES),
            help="Target environment (default GH_ENVIRONMENT).",
        ),
    ] = None,
    message: Annotated[
        str | None,
        value("--message", "-m", metavar="TEXT", parse=grammar.message, help="Commit message (default: HEAD's)."),
    ] = None,
    run_url: Annotated[
        str | None,
        value(
            "--run-url",
            metavar="URL",
            parse=grammar.http_url,
            help="CI run URL (default: from GITHUB_* variables).",
        ),
    ] = None,
    wait: Annotated[bool, switch("--wait", help="Follow the deploy; exit 0 only if it succeeded.")] = False,
) -> None:
    """CI side: sign and send deploy_ready to `ghdeploy serve` (replaces CI's curl)."""
    env = env_of(ctx)
    config = load(env, "notify --wait" if wait else "notify", {"IMAGE_TAG": tag}, {"IMAGE_TAG": "--tag"})
    from ghdeploy import render
    from ghdeploy.commands import notify as notify_command
    from ghdeploy.server.settings import resolve

    keys = resolve(
        config, ("DEPLOY_WEBHOOK_SECRET", "DEPLOY_API_TOKEN") if wait else ("DEPLOY_WEBHOOK_SECRET",), env.environ
    )
    with reporter(env) as progress:
        outcome = notify_command.notify(
            config,
            Path.cwd(),
            progress,
            url=url,
            secret=keys["DEPLOY_WEBHOOK_SECRET"],
            token=keys.get("DEPLOY_API_TOKEN"),
            tag=tag,
            environment=environment,
            message=message,
            run_url=run_url,
            wait=wait,
            environ=env.environ,
        )
    finish(render.notify_result(outcome, env))
