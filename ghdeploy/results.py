"""What an operation returns: data the renderer shows and the exit code derives from."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ghdeploy.errors import ExitCode

if TYPE_CHECKING:
    from ghdeploy.hostops import ImageRecord
    from ghdeploy.images import BuildOutcome, PushOutcome
    from ghdeploy.version_check import VerifyRow


@dataclass(frozen=True)
class Target:
    """The image a host should end up running."""

    ref: str  # what ECR_IMAGE becomes on the host
    label: str  # for people: repo:tag
    digest: str | None = None  # registry digest the pulled image must have
    image_id: str | None = None  # exact image ID, when known (rollback to a recorded image)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "label": self.label, "digest": self.digest, "image_id": self.image_id}


class Result(enum.StrEnum):
    """How one host's deploy or rollback ended (str values: the JSON and the records keep them)."""

    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled back"  # failed after the switch began; the recorded image runs again
    ROLLBACK_FAILED = "rollback failed"
    FAILED = "failed"  # failed before anything on the host changed
    UNTOUCHED = "untouched"  # not reached, or interrupted before any change
    # ghdeploy lost the host mid-way and the host's guardian took over (see the record it wrote)
    ABANDONED = "abandoned"
    # ghdeploy lost the host and could not reach it again; its guardian heals it
    UNCONFIRMED = "unconfirmed"


class Action(enum.StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class Mode(enum.StrEnum):
    """What `deploy` does: the whole pipeline, only build + push, or only the hosts."""

    FULL = "full"
    PUSH_ONLY = "push-only"
    DEPLOY_ONLY = "deploy-only"


RESULTS = tuple(r.value for r in Result)


def unlabel(message: str, label: str) -> str:
    """Drop a leading 'host: ' from a message shown next to the host anyway."""
    prefix = f"{label}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


class _Checked(Protocol):
    @property
    def ok(self) -> bool: ...


def rows_exit_code(rows: Iterable[_Checked]) -> ExitCode:
    """A read-only command over hosts: OK only when there were hosts and every one answered well."""
    items = list(rows)
    return ExitCode.OK if items and all(r.ok for r in items) else ExitCode.FAILED


def outcome_dict(
    result: Result, from_image: ImageRecord | None, target: Target | None, image_id: str | None, error: str | None
) -> dict[str, Any]:
    """The fields a host result and its history record share, serialised in one place."""
    return {
        "from": from_image.to_dict() if from_image else None,
        "to": target.to_dict() if target else None,
        "image_id": image_id,
        "result": str(result),
        "error": error,
    }


@dataclass
class HostResult:
    host: str
    action: Action = Action.DEPLOY
    result: Result = Result.UNTOUCHED
    from_image: ImageRecord | None = None
    target: Target | None = None
    image_id: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.action = Action(self.action)
        self.result = Result(self.result)

    @property
    def succeeded(self) -> bool:
        return self.result == Result.SUCCEEDED

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.succeeded else ExitCode.FAILED

    def outcome(self) -> dict[str, Any]:
        return outcome_dict(self.result, self.from_image, self.target, self.image_id, self.error)

    def to_dict(self) -> dict[str, Any]:
        shared = self.outcome()
        return {
            "host": self.host,
            "action": str(self.action),
            "result": shared["result"],
            "succeeded": self.succeeded,
            "from": shared["from"],
            "to": shared["to"],
            "image_id": shared["image_id"],
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "duration_s": round(self.duration, 3),
            "error": shared["error"],
            "notes": self.notes,
        }


@dataclass
class FleetResult:
    action: Action
    target: Target | None
    hosts: list[HostResult]
    interrupted: bool = False
    duration: float = 0.0

    def __post_init__(self) -> None:
        self.action = Action(self.action)

    @property
    def succeeded(self) -> bool:
        return bool(self.hosts) and all(h.succeeded for h in self.hosts) and not self.interrupted

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in RESULTS}
        for h in self.hosts:
            counts[str(h.result)] = counts.get(str(h.result), 0) + 1
        return {"total": len(self.hosts), **counts}

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.OK if self.succeeded else ExitCode.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "target": self.target.to_dict() if self.target else None,
            "succeeded": self.succeeded,
            "interrupted": self.interrupted,
            "summary": self.counts(),
            "duration_s": round(self.duration, 3),
            "hosts": [h.to_dict() for h in self.hosts],
        }


@dataclass
class DeployReport:
    tag: str
    build: BuildOutcome | None = None
    push: PushOutcome | None = None
    fleet: FleetResult | None = None
    verify: list[VerifyRow] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    plan: list[dict[str, Any]] | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The fleet's code; a verify mismatch after a good deploy fails the command too."""
        code = self.fleet.exit_code if self.fleet is not None else ExitCode.OK
        if code == ExitCode.OK and self.verify is not None and not all(r.ok for r in self.verify):
            return ExitCode.FAILED
        return code

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "build": self.build.to_dict() if self.build else None,
            "push": self.push.to_dict() if self.push else None,
            "deploy": self.fleet.to_dict() if self.fleet else None,
            "verify": [r.to_dict() for r in self.verify] if self.verify is not None else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "plan": self.plan,
        }
