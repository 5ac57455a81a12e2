"""Putting a host back exactly: the recorded image by a reference that still names it, and each
targeted worker as recorded (its backup, the container as it is, or recreated)."""

from __future__ import annotations

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.engine.checks import check_running
from ghdeploy.engine.operation import Operation
from ghdeploy.engine.switch import drain_all, drop_backups, switch_to, wait_healthy
from ghdeploy.errors import GhdeployError, OperationFailed
from ghdeploy.hostops import ImageRecord, Snapshot
from ghdeploy.results import unlabel
from ghdeploy.transports.base import Remote


def naming_exactly(conn: Remote, image_id: str | None, candidates: tuple[str | None, ...]) -> str | None:
    """The first of `candidates` that names exactly image `image_id` on this host (a tag may have
    moved since, or been removed), or None."""
    for candidate in candidates:
        if not candidate:
            continue
        info = hostops.local_image(conn, candidate)
        if info is not None and info.get("Id") == image_id:
            return candidate
    return None


def restore_ref(conn: Remote, record: ImageRecord) -> str:
    """The nicest reference that still names exactly the recorded image on this host."""
    found = naming_exactly(conn, record.image_id, (record.ref, record.repo_digest, record.image_id))
    if found is not None:
        return found
    raise OperationFailed(
        f"{conn.host.label}: the previous image {record.image_id and record.image_id[:19]} is no longer on the host",
        "deploy a known-good tag with `ghdeploy deploy --deploy-only --tag TAG`",
    )


def put_back_targeted(
    op: Operation,
    conn: Remote,
    worker: hostops.TargetedWorker,
    present: hostops.TargetedWorker | None,
    has_backup: bool,
    ref: str,
) -> None:
    """One targeted worker back as recorded: its backup if there is one, else the container as it
    is (started if it ran), else recreated on its recorded image."""
    label = conn.host.label
    name = worker.spec.name
    if has_backup:
        op.reporter.step(label, f"putting back {name}")
        hostops.restore_targeted(conn, worker)
    elif present is not None and present.image.image_id == worker.image.image_id:
        if worker.running:
            hostops.require_ok(conn.run(rc.start_container(name), timeout=120), f"starting {name}", label)
    elif present is not None:
        op.reporter.step(label, f"recreating {name} on its previous image")
        image = restore_ref(conn, worker.image) if worker.image.image_id else ref
        hostops.replace_targeted(conn, op.layout, worker, image)
    else:
        raise OperationFailed(f"{label}: {name} is gone, and there is no backup of it to put back")


def restore(op: Operation, conn: Remote, snapshot: Snapshot, point: ImageRecord | None = None) -> str:
    """Put back exactly `point` (default: the image `snapshot` recorded); health-check it. Returns
    the image ID. Not cancellable.

    A targeted worker whose backup is still there gets that very container back (renamed, and
    started if it ran); one not replaced yet keeps its container; only one replaced and already
    checked is recreated from its recorded configuration on its recorded image.
    """
    label = conn.host.label
    previous = point or snapshot.app_image
    if previous is None or not previous.image_id:
        raise OperationFailed(f"{label}: nothing ran before this deploy, so there is no image to roll back to")
    ref = restore_ref(conn, previous)
    op.reporter.step(label, f"rolling back to {previous.tag or previous.image_id[:19]}")
    current = hostops.read_snapshot(conn, op.layout)
    drain_all(op, conn, current, None)
    backups = set(current.backups)
    now = {t.spec.name: t for t in current.targeted}
    # Stop what runs now (compose worker, targeted workers), bring the app back on `ref`.
    switch_to(op, conn, Snapshot(services=current.services, targeted=current.targeted), ref, {})
    recreated: list[hostops.TargetedWorker] = []
    failed: list[str] = []
    for worker in snapshot.targeted:  # each one, even when another could not be put back
        try:
            put_back_targeted(op, conn, worker, now.get(worker.spec.name), worker.spec.name in backups, ref)
        except GhdeployError as exc:
            failed.append(unlabel(str(exc), label))
            continue
        present = now.get(worker.spec.name)
        if worker.spec.name not in backups and present is not None and present.image.image_id != worker.image.image_id:
            recreated.append(worker)
    if failed:
        raise OperationFailed(f"{label}: " + "; ".join(failed))
    wait_healthy(op, conn, None)
    check_running(conn, op, previous.image_id, snapshot.targeted)
    drop_backups(op, conn, Snapshot(targeted=recreated))
    return previous.image_id
