"""Reading and changing one host: the engine's one door to what runs there and what it keeps.

Every remote command comes from remote_commands (data). What runs is read by snapshot.py, targeted
workers are replaced by targeted.py, records are moved by host_records.py; preflight's look at a
host is here. Callers use `hostops.<name>` for all of them (tests replace them here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import remote_commands as rc
from ghdeploy.host_records import (
    append_record,
    clean_record,
    clear_pending,
    parse_history,
    read_history,
    read_json,
    read_pending,
    write_pending,
)
from ghdeploy.snapshot import (
    ImageRecord,
    ServiceState,
    Snapshot,
    TargetedWorker,
    belongs_to,
    container_spec,
    inspect_images,
    local_image,
    read_snapshot,
    repository_of,
)
from ghdeploy.targeted import (
    created_differences,
    drop_backup,
    recover_backups,
    replace_targeted,
    restore_targeted,
    targeted_problems,
)
from ghdeploy.transports.base import require_ok

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote

__all__ = [
    "HostFacts",
    "ImageRecord",
    "ServiceState",
    "Snapshot",
    "TargetedWorker",
    "append_record",
    "belongs_to",
    "clean_record",
    "clear_pending",
    "container_spec",
    "created_differences",
    "drop_backup",
    "inspect_images",
    "local_image",
    "parse_history",
    "preflight_facts",
    "read_history",
    "read_json",
    "read_pending",
    "read_snapshot",
    "recover_backups",
    "replace_targeted",
    "require_ok",
    "restore_targeted",
    "targeted_problems",
    "write_pending",
]


@dataclass
class HostFacts:
    """What preflight learned about a host, besides docker being there."""

    image_services: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # any one refuses the host (exit 2)
    notes: list[str] = field(default_factory=list)  # said before anything starts
    first_deploy: bool = False


def preflight_facts(remote: Remote, layout: rc.RemoteLayout) -> HostFacts:
    """The compose file's services, what runs, and whether a deploy can change it safely. Read-only."""
    facts = HostFacts()
    result = remote.run(rc.compose_services(layout), timeout=60)
    services: dict[str, Any] = {}
    if result.rc != 0:
        facts.problems.append(
            f"`docker compose config` failed for {layout.compose_file}: {result.stderr.strip()[-300:]}"
        )
    else:
        try:
            parsed = json.loads(result.stdout or "{}")
            services = parsed.get("services") or {} if isinstance(parsed, dict) else {}
        except ValueError:
            facts.problems.append(f"`docker compose config` printed no JSON for {layout.compose_file}")
    if services:
        missing = [name for name in ("api", "worker") if name not in services]
        if missing:
            facts.problems.append(
                f"{layout.compose_file} defines no service {' or '.join(missing)} "
                f"(it has: {', '.join(sorted(services)) or 'none'})"
            )
        facts.image_services = sorted(
            name for name, svc in services.items() if isinstance(svc, dict) and rc.IMAGE_PROBE in str(svc.get("image"))
        )
        others = [name for name in ("api", "worker") if name in services and name not in facts.image_services]
        if others:
            facts.problems.append(
                f"in {layout.compose_file}, service {' and '.join(others)} does not use image ${{ECR_IMAGE}}"
            )
    snapshot = read_snapshot(remote, layout)
    facts.problems += targeted_problems(snapshot)
    if not snapshot.services:
        lookalikes = [line for line in _all_containers(remote) if _looks_like_the_app(line, layout)]
        if lookalikes:
            facts.problems.append(
                f"nothing runs from {layout.app_dir}, but {len(lookalikes)} container(s) look like the app: "
                + ", ".join(f"{c[0]} ({c[1]})" for c in lookalikes[:5])
                + " (started from another directory, or by the old deploy script?)"
            )
        elif not snapshot.targeted:
            facts.first_deploy = True
            facts.notes.append("first deploy: nothing of the app runs here, so there is nothing to roll back to")
    return facts


def _all_containers(remote: Remote) -> list[list[str]]:
    result = remote.run(rc.list_all_containers(), timeout=60)
    return [[*line.split("\t"), "", "", ""][:4] for line in result.stdout.splitlines() if line.strip()]


def _looks_like_the_app(row: list[str], layout: rc.RemoteLayout) -> bool:
    _name, image, service, _project = row
    if service in ("api", "worker"):
        return True
    return layout.image_repo is not None and repository_of(image) == layout.image_repo
