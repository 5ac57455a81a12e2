"""The command line before click reads it: global options written after the command move to the
front, and click gets the tree of the one command the line runs (building every command costs time).
"""

from __future__ import annotations

import copy
from typing import Any

import typer

from ghdeploy.cli.app import app

# Global flags that may also be written after the command (`ghdeploy status --json`).
_GLOBAL_FLAGS = {"--json", "-q", "--quiet", "-v", "-vv", "-vvv", "--verbose"}
# Global options that take a value (`ghdeploy status --env-file staging.env`).
_GLOBAL_VALUE_OPTIONS = {"--env-file"}
GLOBAL_OPTIONS_HELP = (
    "\b\nGlobal options (before or after the command):\n"
    "  --env-file PATH   config file to read instead of ./.env.deploy\n"
    "  --json            one JSON document on stdout, nothing else\n"
    "  -v, --verbose     show each command run on a host as it runs\n"
    "  -q, --quiet       only warnings and errors on stderr"
)


def value_options(command: Any) -> set[str]:
    """The options of a click command tree that take a value: the word after one is its value,
    never a global flag. Read from the tree itself, so a new option needs no list kept by hand."""
    found: set[str] = set()
    stack = [command]
    while stack:
        current = stack.pop()
        for param in getattr(current, "params", []):
            if getattr(param, "param_type_name", "") == "option" and not param.is_flag and not param.count:
                found.update(param.opts)
                found.update(param.secondary_opts)
        stack.extend(getattr(current, "commands", {}).values())
    return found


def hoist_global_flags(args: list[str], takes_value: set[str] | None = None) -> list[str]:
    """Move global options written after the command to the front, where click expects them."""
    if takes_value is None:
        takes_value = value_options(click_command(args))
    front: list[str] = []
    rest: list[str] = []
    previous = ""
    take_value = False
    for i, arg in enumerate(args):
        if take_value:  # the value of a global option moves with it
            front.append(arg)
            take_value = False
        elif arg == "--":
            rest += args[i:]
            break
        elif previous in takes_value:
            rest.append(arg)
        elif arg in _GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in _GLOBAL_VALUE_OPTIONS)):
            front.append(arg)
        elif arg in _GLOBAL_VALUE_OPTIONS:
            front.append(arg)
            take_value = True
        else:
            rest.append(arg)
        previous = arg
    return front + rest


def _command_name(args: list[str]) -> str | None:
    """The command a command line runs, or None when it runs none (--help, --version, nothing)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--help", "-h", "--version", "--"):
            return None
        elif arg == "--env-file":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def click_command(args: list[str]) -> Any:
    """The click command tree for this command line: only the command it runs, when it names one.

    typer builds every command's parameters (it reads each signature and its annotations) when
    the tree is made: ~30 ms on every run, growing with each command added. A run needs one. An
    unknown name gets the full tree, so click's "No such command" lists them all.
    """
    name = _command_name(args)
    commands = [c for c in app.registered_commands if name is not None and _registered_name(c) == name]
    groups = [g for g in app.registered_groups if name is not None and g.name == name]
    if not commands and not groups:
        return typer.main.get_command(app)
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return typer.main.get_command(only)


def _registered_name(command: Any) -> str:
    return command.name or command.callback.__name__.lower().replace("_", "-")


def list_global_options(group: Any) -> None:
    """Every subcommand's --help lists the global options it accepts."""
    for sub in getattr(group, "commands", {}).values():
        if GLOBAL_OPTIONS_HELP not in (sub.epilog or ""):
            sub.epilog = f"{sub.epilog}\n{GLOBAL_OPTIONS_HELP}" if sub.epilog else GLOBAL_OPTIONS_HELP
        list_global_options(sub)
