"""What a host sends back is data we do not control: give it the shape readers rely on.

A /health/version body, a worker's /worker/health, a lock record or a history line written by
another version (or by hand) may hold numbers where text is expected, lists where objects are,
or rich markup in names. These functions are the seam: after them, text is str (or None),
numbers are numbers, and nothing else gets through. (Markup is escaped where it is drawn,
in render.py.)
"""

from __future__ import annotations

from typing import Any


def text(value: Any, limit: int = 500) -> str | None:
    """A value shown as text: None stays None, anything else becomes a bounded str."""
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value))[:limit]


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def version(body: Any) -> dict[str, Any] | None:
    """A /health/version answer (the app's contract), with only its known fields, typed."""
    if not isinstance(body, dict):
        return None
    out: dict[str, Any] = {
        k: text(body.get(k)) for k in ("service", "commit_sha", "image_tag", "build_time", "node_env")
    }
    out["uptime_ms"] = number(body.get("uptime_ms"))
    return out


def worker(body: Any) -> dict[str, Any] | None:
    """A /worker/health answer: status text and deploy_safe flag."""
    if not isinstance(body, dict):
        return None
    return {"status": text(body.get("status")), "deploy_safe": body.get("deploy_safe") is True}


def record(data: Any) -> dict[str, Any] | None:
    """A lock, pending or history record: known text fields as text, from/to as objects of text."""
    if not isinstance(data, dict):
        return None
    out = dict(data)
    for key in (
        "id",
        "time",
        "since",
        "action",
        "operator",
        "message",
        "tag",
        "result",
        "error",
        "image_id",
        "ghdeploy",
    ):
        if key in out:
            out[key] = text(out[key])
    for key in ("from", "to"):
        if key in out:
            value = out[key]
            out[key] = {str(k): text(v) for k, v in value.items()} if isinstance(value, dict) else None
    if "duration_s" in out:
        out["duration_s"] = number(out["duration_s"])
    return out
