"""How an error reaches the user: two plain lines on stderr (or one JSON document with --json).

Kept apart from render.py so refusing bad input never imports rich: an error is printed in the
time the interpreter takes to start, not plus a UI library's import.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ghdeploy import __version__

JSON_SCHEMA_VERSION = 1


def _colour(code: str, text: str) -> str:
    stream = sys.stderr
    plain = os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb" or not stream.isatty()
    return text if plain else f"\033[{code}m{text}\033[0m"


def print_error(message: str, hint: str | None, problems: list[str] | None = None) -> None:
    """`error: ...` (one line per problem when there are several) and `hint: ...`, literally."""
    lines: list[str] = []
    if problems and len(problems) > 1:
        lines.append(f"{_colour('1;31', 'error:')} {len(problems)} problems:")
        lines += [f"  - {problem}" for problem in problems]
    else:
        lines.append(f"{_colour('1;31', 'error:')} {message}")
    if hint:
        lines.append(f"{_colour('36', 'hint:')} {hint}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def emit_json(command: str, payload: dict[str, Any]) -> None:
    """The single JSON document on stdout: `version` (schema), `ghdeploy`, `command`, then the payload."""
    doc = {"version": JSON_SCHEMA_VERSION, "ghdeploy": __version__, "command": command, **payload}
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def error_json(exc: Any) -> None:
    emit_json(
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
