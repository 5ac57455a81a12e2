"""Targeted workers: replaced without ever destroying the old one first, and the backups a
stopped run left settled. The commands are remote_commands' (data); this runs them on a host.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from ghdeploy import container_spec as cspec
from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.errors import OperationFailed
from ghdeploy.snapshot import Snapshot, TargetedWorker, inspect_images
from ghdeploy.transports.base import require_ok

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


def targeted_problems(snapshot: Snapshot) -> list[str]:
    """What keeps the targeted workers from being recreated exactly (refused in preflight)."""
    return [problem for worker in snapshot.targeted for problem in worker.spec.problems]


def replace_targeted(remote: Remote, layout: rc.RemoteLayout, worker: TargetedWorker, image: str) -> None:
    """Replace a (stopped) targeted worker with one on `image`, never destroying the old one first.

    The old container becomes NAME.ghdeploy-backup; the new one is created, joined to its extra
    networks, checked against the old configuration, and started if the old one ran before the
    deploy. Any failure puts the backup back (started again if it ran) and raises. The backup
    is removed by drop_backup() once the whole host is checked.
    """
    label = remote.host.label
    name = worker.spec.name
    delimiter = "GHDEPLOY_ENV_" + secrets.token_hex(8)
    script = cspec.env_script(worker.spec, rc.env_file_path(layout, name), delimiter)
    created = remote.run(
        rc.create_container(layout, worker.spec, image, worker.running), stdin=script.encode(), timeout=120
    )
    if created.rc != 0:
        kept = "the old one is back" if created.rc == 3 else "putting the old one back failed too"
        raise OperationFailed(
            f"{label}: creating {name} on the new image failed ({kept}): {created.stderr.strip()[-300:]}"
        )
    try:
        for network in worker.spec.networks:
            require_ok(
                remote.run(rc.connect_network(name, network), timeout=60), f"connecting {name} to {network[-1]}", label
            )
        problems = created_differences(remote, worker.spec, name, image)
        if problems:
            raise OperationFailed(f"{label}: the new {name} is not configured like the old one: " + "; ".join(problems))
        if worker.running:
            require_ok(remote.run(rc.start_container(name), timeout=120), f"starting {name}", label)
    except OperationFailed:
        restore_targeted(remote, worker)
        raise


def created_differences(remote: Remote, intended: ContainerSpec, name: str, image: str) -> list[str]:
    result = remote.run(rc.inspect_containers([name]), timeout=60)
    try:
        (container,) = json.loads(result.stdout or "[]")
    except ValueError:
        return [f"docker inspect {name} failed: {result.stderr.strip()[-200:]}"]
    images = inspect_images(remote, [str(container.get("Image") or "")])
    return cspec.differences(intended, container, images.get(str(container.get("Image") or ""), {}))


def restore_targeted(remote: Remote, worker: TargetedWorker) -> None:
    """Put the backup of a targeted worker back under its name; start it if it ran. No backup: nothing to do."""
    require_ok(
        remote.run(rc.restore_container(worker.spec.name, worker.running), timeout=120),
        f"putting back {worker.spec.name}",
        remote.host.label,
    )


def recover_backups(remote: Remote, snapshot: Snapshot) -> list[str]:
    """Settle the targeted-worker backups (NAME.ghdeploy-backup) a stopped run left; return notes.

    A replacement that runs the image the app runs now finished its switch: its backup is stale
    and is removed. Otherwise the backup (the container as it was, exact configuration) is put
    back, started if the replacement was running; one with no replacement is left stopped
    (whether it ran is not known).
    """
    app = snapshot.app_image.image_id if snapshot.app_image else None
    current = {t.spec.name: t for t in snapshot.targeted}
    notes = []
    for name in snapshot.backups:
        replacement = current.get(name)
        if replacement is not None and replacement.running and app and replacement.image.image_id == app:
            drop_backup(remote, name)
            notes.append(f"{name}: removed the backup a stopped run left (its replacement runs the app's image)")
            continue
        start = bool(replacement and replacement.running)
        require_ok(
            remote.run(rc.restore_container(name, start), timeout=120), f"putting back {name}", remote.host.label
        )
        state = "started" if start else "left stopped"
        notes.append(f"{name}: put back the container a stopped run had replaced ({state})")
    return notes


def drop_backup(remote: Remote, name: str) -> None:
    require_ok(remote.run(rc.drop_backup(name), timeout=60), f"removing the backup of {name}", remote.host.label)
