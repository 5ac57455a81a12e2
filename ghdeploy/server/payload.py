"""The deploy_ready payload: built by `notify`, parsed and checked by `serve`.

CI's payload (the deploy_ready contract): `event`, `image`, `image_tag`, `commit_sha`, `commit_message`,
`environment`, `run_url`; `notify` adds `sent_at`. The receiver answers 400 for a body it cannot
read and 422 for one it reads but will not deploy, always with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ghdeploy.config import TAG_RE

MAX_BODY = 64 * 1024
EVENT = "ghosthands.deploy_ready"
HEADER_EVENT = "deploy_ready"  # X-GH-Event
FINISHED_EVENT = "ghosthands.deploy_finished"
FIELDS = ("event", "image", "image_tag", "commit_sha", "commit_message", "environment", "run_url")


class Refusal(Exception):
    """A request the receiver answers with `status` and `reason` instead of queueing it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class DeployRequest:
    event: str
    image: str
    image_tag: str
    commit_sha: str
    commit_message: str
    environment: str
    run_url: str
    sent_at: datetime | None = None


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without a zone is UTC."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse(body: bytes) -> DeployRequest:
    """The body as a DeployRequest, or Refusal(400) saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refusal(400, "the body is not a JSON object")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise Refusal(400, f"missing field(s): {', '.join(missing)}")
    wrong = [name for name in FIELDS if not isinstance(data[name], str)]
    if wrong:
        raise Refusal(400, f"field(s) not a string: {', '.join(wrong)}")
    sent_at = None
    if data.get("sent_at") is not None:
        if not isinstance(data["sent_at"], str):
            raise Refusal(400, "sent_at is not a string (ISO 8601 time)")
        try:
            sent_at = parse_time(data["sent_at"])
        except ValueError:
            raise Refusal(400, f"sent_at {data['sent_at']!r} is not an ISO 8601 time") from None
    return DeployRequest(**{name: data[name] for name in FIELDS}, sent_at=sent_at)


@dataclass(frozen=True)
class Expectations:
    """What this receiver deploys: its registry, repository and environment."""

    registry: str
    repository: str
    environment: str
    max_age: float  # seconds a `sent_at` may be old (or ahead, for clock skew)


def check(
    request: DeployRequest,
    expect: Expectations,
    now: datetime,
    header_event: str | None = None,
    header_environment: str | None = None,
) -> None:
    """Raise Refusal(422, reason) for a well-formed request this receiver must not deploy."""
    if request.event != EVENT:
        raise Refusal(422, f"event {request.event!r} is not {EVENT!r}")
    if header_event is not None and header_event != HEADER_EVENT:
        raise Refusal(422, f"X-GH-Event {header_event!r} is not {HEADER_EVENT!r}")
    if request.environment != expect.environment:
        raise Refusal(
            422, f"environment {request.environment!r} is not this receiver's GH_ENVIRONMENT {expect.environment!r}"
        )
    if header_environment is not None and header_environment != request.environment:
        raise Refusal(422, f"X-GH-Environment {header_environment!r} differs from the body's {request.environment!r}")
    if not TAG_RE.fullmatch(request.image_tag):
        raise Refusal(422, f"image_tag {request.image_tag!r} is not a valid docker tag")
    image = f"{expect.registry}/{expect.repository}:{request.image_tag}"
    if request.image != image:
        raise Refusal(422, f"image {request.image!r} is not {image!r} (this receiver's ECR_REGISTRY/ECR_REPOSITORY)")
    if request.sent_at is not None:
        age = (now - request.sent_at).total_seconds()
        if age > expect.max_age:
            raise Refusal(422, f"sent_at is {age:.0f}s old, more than WEBHOOK_MAX_AGE {expect.max_age:g}s")
        if -age > expect.max_age:
            raise Refusal(422, f"sent_at is {-age:.0f}s in the future, more than WEBHOOK_MAX_AGE {expect.max_age:g}s")


def build(
    *,
    registry: str,
    repository: str,
    tag: str,
    commit_sha: str,
    commit_message: str,
    environment: str,
    run_url: str,
    now: datetime | None = None,
) -> bytes:
    """The body `notify` signs and sends: CI's payload plus `sent_at`."""
    sent = (now or datetime.now(UTC)).astimezone(UTC)
    payload: dict[str, Any] = {
        "event": EVENT,
        "image": f"{registry}/{repository}:{tag}",
        "image_tag": tag,
        "commit_sha": commit_sha,
        "commit_message": commit_message,
        "environment": environment,
        "run_url": run_url,
        "sent_at": iso(sent),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
