"""Disk: keep the images rollback needs, remove this repository's others.

After a successful deploy (and on `ghdeploy prune`) each host keeps the images of the last
RETAIN_RELEASES releases in its deploy history, so `rollback` never needs the registry, and
removes the other images of this repository (tagged or dangling). Never an image any container
uses (running or stopped: compose services, targeted workers, anything else), never an image
of another repository: an image that also carries another repository's tag only loses our tags.
Removal is `docker rmi` without --force, so the engine refuses anything in use as a last guard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy import remote_day2 as day2
from ghdeploy.errors import GhdeployError

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote

MB = 1024 * 1024


@dataclass(frozen=True)
class Removal:
    image_id: str
    refs: list[str]  # what `docker rmi` is given: our tags, or the ID of an untagged image of ours
    size: int
    untag_only: bool  # the image also carries another repository's tag: it stays


@dataclass
class PrunePlan:
    keep: dict[str, str] = field(default_factory=dict)  # image ID -> why it stays
    remove: list[Removal] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(r.size for r in self.remove if not r.untag_only)


@dataclass
class PruneResult:
    host: str
    plan: PrunePlan | None = None
    removed: list[str] = field(default_factory=list)  # image IDs gone (or untagged)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan or PrunePlan()
        return {
            "host": self.host,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "kept": [{"image_id": k, "why": v} for k, v in plan.keep.items()],
            "removed": [
                {"image_id": r.image_id, "refs": r.refs, "size_bytes": r.size, "untag_only": r.untag_only}
                for r in plan.remove
                if self.dry_run or r.image_id in self.removed
            ],
            "freed_bytes": plan.freed_bytes
            if self.dry_run
            else sum(r.size for r in plan.remove if r.image_id in self.removed and not r.untag_only),
            "errors": self.errors,
        }


def recent_releases(history: list[dict[str, Any]], retain: int) -> list[str]:
    """Image IDs of the last `retain` releases, newest first: what ran after each successful
    deploy or rollback, and what ran before it (the image a rollback goes back to)."""
    releases: list[str] = []
    for record in reversed(history):
        if record.get("result") != "succeeded":
            continue
        for image_id in (record.get("image_id"), (record.get("from") or {}).get("image_id")):
            if image_id and image_id not in releases:
                releases.append(image_id)
    return releases[:retain]


def _ours(ref: str, repo: str) -> bool:
    return ref.startswith(repo + ":") or ref.startswith(repo + "@")


def plan(images: list[dict[str, Any]], in_use: set[str], releases: list[str], repo: str) -> PrunePlan:
    """Which images of `repo` (registry/repository) to remove, and why the others stay."""
    result = PrunePlan()
    for n, image_id in enumerate(releases, 1):
        result.keep.setdefault(image_id, f"release {n} of the last {len(releases)} in the history")
    for image_id in sorted(in_use):
        result.keep.setdefault(image_id, "used by a container")
    for image in sorted(images, key=lambda i: str(i.get("Id"))):
        image_id = str(image.get("Id") or "")
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        digests = image.get("RepoDigests") or []
        our_tags = [t for t in tags if _ours(t, repo)]
        if not image_id or image_id in result.keep:
            continue
        if not our_tags and not any(_ours(d, repo) for d in digests):
            continue  # another application's image (or a build of something else): never ours to touch
        other_tags = [t for t in tags if not _ours(t, repo)]
        if other_tags:
            if our_tags:
                result.remove.append(Removal(image_id, our_tags, int(image.get("Size") or 0), untag_only=True))
            continue
        result.remove.append(Removal(image_id, our_tags or [image_id], int(image.get("Size") or 0), untag_only=False))
    return result


def parse_inventory(text: str) -> tuple[list[dict[str, Any]], set[str]]:
    images_text, _, containers_text = text.partition(day2.PRUNE_MARKER)
    try:
        images = json.loads(images_text or "[]")
    except ValueError as exc:
        raise GhdeployError(f"could not read the host's image list: {exc}") from None
    in_use = {line.strip() for line in containers_text.splitlines() if line.strip()}
    return [i for i in images if isinstance(i, dict)], in_use


def prune_host(
    remote: Remote, layout: rc.RemoteLayout, repo: str, retain: int, *, dry_run: bool = False
) -> PruneResult:
    """Plan (from the host's history and images) and, unless a dry run, remove."""
    result = PruneResult(host=remote.host.label, dry_run=dry_run)
    inventory = remote.run(day2.image_inventory(), timeout=120)
    if inventory.rc != 0:
        result.errors.append(f"could not list images (exit {inventory.rc}): {inventory.stderr.strip()[-200:]}")
        return result
    images, in_use = parse_inventory(inventory.stdout)
    history = hostops.read_history(remote, layout, 500)
    result.plan = plan(images, in_use, recent_releases(history, retain), repo)
    if dry_run or not result.plan.remove:
        return result
    for removal in result.plan.remove:
        # One image per call: a refusal (an image that came into use meanwhile) stops only that one.
        res = remote.run(day2.remove_images(removal.refs), timeout=300)
        if res.rc == 0:
            result.removed.append(removal.image_id)
        else:
            result.errors.append(f"{removal.refs[0]}: {res.stderr.strip()[-200:]}")
    return result


def summary(result: PruneResult) -> str:
    """One line for the operator."""
    plan_ = result.plan or PrunePlan()
    if result.dry_run:
        return f"would remove {len(plan_.remove)} image(s) (~{plan_.freed_bytes // MB} MB), keep {len(plan_.keep)}"
    freed = sum(r.size for r in plan_.remove if r.image_id in result.removed and not r.untag_only)
    text = f"removed {len(result.removed)} old image(s) (~{freed // MB} MB), kept {len(plan_.keep)}"
    if result.errors:
        text += f"; {len(result.errors)} not removed: {'; '.join(result.errors)}"
    return text
