"""What an operation returns: data the renderer shows and the exit code derives from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import ExitCode

if TYPE_CHECKING:
    from ghdeploy.hostops import ImageRecord
    from ghdeploy.images import BuildOutcome, PushOutcome
    from ghdeploy.status import VerifyRow


@dataclass(frozen=True)
class Target:
    """The image a host should end up running."""

    ref: str  # what ECR_IMAGE becomes on the host
    label: str  # for people: repo:tag
    digest: str | None = None  # registry digest the pulled image must have
    image_id: str | None = None  # exact image ID, when known (rollback to a recorded image)

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "label": self.label, "digest": self.digest, "image_id": self.image_id}


RESULTS = ("succeeded", "rolled back", "rollback failed", "failed", "untouched")


@dataclass
class HostResult:
    host: str
    action: str = "deploy"
    result: str = "untouched"
    from_image: ImageRecord | None = None
    target: Target | None = None
    image_id: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.result == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "action": self.action,
            "result": self.result,
            "succeeded": self.succeeded,
            "from": self.from_image.to_dict() if self.from_image else None,
            "to": self.target.to_dict() if self.target else None,
            "image_id": self.image_id,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "notes": self.notes,
        }


@dataclass
class FleetResult:
    action: str
    target: Target | None
    hosts: list[HostResult]
    interrupted: bool = False
    duration: float = 0.0

    @property
    def succeeded(self) -> bool:
        return bool(self.hosts) and all(h.succeeded for h in self.hosts) and not self.interrupted

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in RESULTS}
        for h in self.hosts:
            counts[h.result] = counts.get(h.result, 0) + 1
        return {"total": len(self.hosts), **counts}

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.OK if self.succeeded else ExitCode.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
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
