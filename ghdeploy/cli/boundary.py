"""The one error boundary: run one command line, map every way it can end to an exit code."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, NoReturn

import typer

from ghdeploy.cli.argv import _command_name, click_command, hoist_global_flags, list_global_options, value_options
from ghdeploy.environment import Environment
from ghdeploy.errors import ExitCode, GhdeployError


def _click_exceptions() -> Any:
    """The exceptions module of the click that typer runs on (typer >= 0.20 vendors its own copy)."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer that uses the click package
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def _link_lost(cause: EOFError, env: Environment) -> int:
    from ghdeploy import render_errors
    from ghdeploy.errors import OperationFailed

    error = OperationFailed(
        f"an SSH connection was lost ({cause or 'connection closed'}) and the command could not finish",
        "run `ghdeploy status`: a host a deploy or rollback was changing heals itself (its guardian "
        "puts the recorded image back and frees the lock); then re-run",
    )
    if env.json:
        render_errors.error_json(error, env)
    render_errors.print_error(error.message, error.hint, env=env)
    return int(error.exit_code)


def main(argv: list[str] | None = None, env: Environment | None = None) -> int:
    """Run `argv` (default: this process's arguments) in `env` (default: this process's streams)."""
    click = _click_exceptions()
    env = env or Environment()
    given = sys.argv[1:] if argv is None else list(argv)
    command = click_command(given)  # global options after the command do not change which one it is
    args = hoist_global_flags(given, value_options(command))
    list_global_options(command)
    try:
        result = command.main(args=args, prog_name="ghdeploy", standalone_mode=False, obj=env)
    except GhdeployError as exc:
        from ghdeploy import render_errors

        if env.json:
            render_errors.error_json(exc, env)
        render_errors.print_error(exc.message, exc.hint, getattr(exc, "problems", None), env)
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__cause__, EOFError):
            # click turns ANY EOFError from a command into Abort (a prompt's own EOF is raised
            # `from None`). From a command's body it is paramiko's bare EOFError of a link that
            # died: a failure, never an interrupt (exit 130 would tell a script Ctrl-C was pressed).
            return _link_lost(exc.__cause__, env)
        env.stderr.write("aborted\n")
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show(env.stderr)
        if exc.exit_code and (env.json or "--json" in args):
            from ghdeploy import render_errors
            from ghdeploy.errors import UsageError

            # --json promises one document on stdout, for a mistyped command line too.
            render_errors.error_json(
                UsageError(exc.format_message(), "see `ghdeploy --help` or `ghdeploy COMMAND --help`"), env
            )
        return int(ExitCode.BAD_INPUT) if exc.exit_code else 0
    except EOFError:
        env.stderr.write("no answer on standard input\n")
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        env.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    return result if isinstance(result, int) else 0


# Commands whose process may end without Python's interpreter teardown once main() returned:
# they only read (or print help, or refused their input), so nothing of theirs is left to finish.
QUICK_EXIT = frozenset({"status", "verify", "history", "lock", "hosts", None})


def run() -> NoReturn:
    """The console script and `python -m ghdeploy`: main(), then end the process.

    Python's own teardown (clearing every module, a last collection) costs 60-100 ms once rich,
    paramiko and cryptography are loaded: a quarter of a one-host `verify`. For a read-only
    command, help, or a refused input, the output is flushed and the process ends at once, as
    the normal exit would, unless a thread that is not a daemon is still running (then Python's
    exit waits for it as usual). serve, agent, deploy and the rest always exit the normal way.
    """
    args = sys.argv[1:]
    code = main(args)
    if _command_name(args) in QUICK_EXIT or code == ExitCode.BAD_INPUT:
        others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        if not others:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):  # a closed or broken pipe: let Python's exit deal with it
                sys.exit(code)
            os._exit(code)
    sys.exit(code)
