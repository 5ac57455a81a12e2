"""How an error reaches the user: two plain lines on stderr (or one JSON document with --json).

Kept apart from render.py so refusing bad input never imports rich: an error is printed in the
time the interpreter takes to start, not plus a UI library's import.
"""

from __future__ import annotations

import json
from typing import Any

from ghdeploy import __version__
from ghdeploy.environment import Environment

JSON_SCHEMA_VERSION = 1


def print_error(
    message: str, hint: str | None, problems: list[str] | None = None, env: Environment | None = None
) -> None:
    """`error: ...` (one line per problem when there are several) and `hint: ...`, literally."""
    env = env or Environment()
    colour = env.colour(env.stderr)

    def _colour(code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if colour else text

    lines: list[str] = []
    if problems and len(problems) > 1:
        lines.append(f"{_colour('1;31', 'error:')} {len(problems)} problems:")
        lines += [f"  - {problem}" for problem in problems]
    else:
        lines.append(f"{_colour('1;31', 'error:')} {message}")
    if hint:
        lines.append(f"{_colour('36', 'hint:')} {hint}")
    env.stderr.write("\n".join(lines) + "\n")
    env.stderr.flush()


def emit_json(env: Environment, command: str, payload: dict[str, Any]) -> None:
    """The single JSON document on stdout: `version` (schema), `ghdeploy`, `command`, then the payload."""
    doc = {"version": JSON_SCHEMA_VERSION, "ghdeploy": __version__, "command": command, **payload}
    env.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    env.stdout.flush()


def error_json(exc: Any, env: Environment | None = None) -> None:
    emit_json(
        env or Environment(),
        "error",
        {
            "ok": False,
            "error": {
                "message": exc.message,
                "hint": exc.hint,
                "exit_code": int(exc.exit_code),
                "type": type(exc).__name__,
            },
        },
    )
