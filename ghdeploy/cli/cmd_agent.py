"""`agent` and `agent init-table`: the per-host agent that follows a tag in the registry."""

from typing import Annotated, Any

import typer

from ghdeploy import grammar
from ghdeploy.cli.app import agent_app, env_of
from ghdeploy.cli.options import switch, value
from ghdeploy.cli.runtime import finish, load, reporter
from ghdeploy.cli.signals import AgentSignals


@agent_app.callback(
    invoke_without_command=True,
    epilog=(
        "\b\nExamples (on the host, usually as the systemd unit contrib/ghdeploy-agent.service):\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent            poll every AGENT_INTERVAL seconds\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent --once --json\n"
        "  ghdeploy --env-file /etc/ghdeploy/agent.env agent init-table  create AGENT_FLEET_TABLE"
    ),
)
def agent(
    ctx: typer.Context,
    once: Annotated[bool, switch("--once", help="Poll once, deploy if needed, then exit.")] = False,
    interval: Annotated[
        int | None,
        value(
            "--interval",
            metavar="SECONDS",
            parse=grammar.seconds(grammar.AGENT_MIN_INTERVAL, 86400),
            help="Seconds between polls (default AGENT_INTERVAL, 60).",
        ),
    ] = None,
) -> None:
    """Follow AGENT_TAG and keep this host on its newest good digest."""
    if ctx.invoked_subcommand is not None:
        return
    env = env_of(ctx)
    config = load(
        env,
        "agent",
        {"AGENT_INTERVAL": str(interval) if interval is not None else None},
        {"AGENT_INTERVAL": "--interval"},
    )
    from ghdeploy import render
    from ghdeploy.commands import agent as agent_cmd

    progress = reporter(env)
    progress.live_mode = False  # a service's log: plain lines, never a live display
    with progress, AgentSignals(progress) as cancel:
        runner = agent_cmd.build_agent(config, progress, cancel)
        if once:
            outcome: dict[str, Any] = {}
            runner.run(lambda kind, data: outcome.update(data) if kind == "poll" else None, once=True)
            finish(render.agent_once(outcome, env))
            return
        code = runner.run(lambda kind, data: render.agent_event(kind, data, env), once=False)
    finish(code)


@agent_app.command("init-table")
def agent_init_table(ctx: typer.Context) -> None:
    """Create the DynamoDB table AGENT_FLEET_TABLE that coordinates the fleet's agents (idempotent)."""
    env = env_of(ctx)
    config = load(env, ("AWS_REGION", "AGENT_FLEET_TABLE"))
    from ghdeploy import render
    from ghdeploy.commands import agent as agent_cmd

    finish(render.agent_table_result(agent_cmd.init_table(config), env))
