"""The new image present on a host: login on stdin, `compose pull` of the services that use it,
and its digest and image ID checked against what was built or resolved."""

from __future__ import annotations

from typing import Any

from ghdeploy import hostops
from ghdeploy import remote_commands as rc
from ghdeploy.engine.operation import Operation
from ghdeploy.errors import OperationFailed
from ghdeploy.results import Target
from ghdeploy.transports.base import Remote


def _has_digest(info: dict[str, Any], digest: str | None) -> bool:
    return digest is None or any(d.endswith("@" + digest) for d in info.get("RepoDigests") or [])


def ensure_image(op: Operation, conn: Remote, target: Target) -> str:
    """Make `target` present on the host; return its image ID. Pulls only when needed."""
    label = conn.host.label
    info = hostops.local_image(conn, target.ref)
    if info is not None and _has_digest(info, target.digest):
        op.reporter.step(label, f"{target.label} already on host")
    else:
        if op.auth is None:
            raise OperationFailed(f"{label}: {target.ref} is not on the host and there is no registry login to pull it")
        config_dir = rc.docker_config_dir(op.layout.state_dir, op.token(6))
        op.reporter.step(label, f"pulling {target.label}")
        try:
            from ghdeploy.docker import registry_config

            creds = registry_config(op.auth.registry, op.auth.username, op.auth.password)
            hostops.require_ok(
                conn.run(rc.write_registry_auth(op.layout.state_dir, config_dir), stdin=creds.encode(), timeout=60),
                "writing the registry credentials",
                label,
            )
            hostops.require_ok(
                conn.run(rc.compose_pull(op.layout, target.ref, config_dir, op.image_services(label)), timeout=1800),
                "docker compose pull",
                label,
            )
        finally:
            conn.run(rc.remove_dir(config_dir), timeout=60)
        info = hostops.local_image(conn, target.ref)
        if info is None:
            raise OperationFailed(f"{label}: {target.ref} is not on the host after the pull")
        if not _has_digest(info, target.digest):
            raise OperationFailed(
                f"{label}: pulled {target.label} but its digest is not {target.digest} (the tag moved during the deploy?)",
                "run the deploy again",
            )
    image_id = str(info["Id"])
    if target.image_id and image_id != target.image_id:
        raise OperationFailed(f"{label}: {target.ref} is image {image_id[:19]}, expected {target.image_id[:19]}")
    return image_id
