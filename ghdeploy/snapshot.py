"""What runs on a host: docker's JSON turned into typed data (the app's services, the targeted
workers and their backups), read through a transport.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import container_spec as cspec
from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
from ghdeploy.docker_api import APIUnavailable
from ghdeploy.errors import OperationFailed

if TYPE_CHECKING:
    from ghdeploy.transports.base import Remote


@dataclass
class ImageRecord:
    """An image as it runs on a host: exact ID plus how it was named."""

    image_id: str | None
    ref: str | None = None  # the name the container was started with (e.g. registry/repo:tag)
    repo_digest: str | None = None  # registry/repo@sha256:... when the image came from a registry

    @property
    def tag(self) -> str | None:
        if not self.ref or "@" in self.ref:
            return None
        last = self.ref.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    @property
    def digest(self) -> str | None:
        return self.repo_digest.split("@", 1)[1] if self.repo_digest and "@" in self.repo_digest else None

    @property
    def restore_ref(self) -> str | None:
        """The reference that names exactly this image: its repo digest, else its ID."""
        return self.repo_digest or self.image_id

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tag": self.tag, "digest": self.digest}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ImageRecord | None:
        if not data:
            return None
        return cls(image_id=data.get("image_id"), ref=data.get("ref"), repo_digest=data.get("repo_digest"))


@dataclass
class TargetedWorker:
    spec: ContainerSpec
    image: ImageRecord
    status_port: int | None
    running: bool
    restarts: int = 0


@dataclass
class ServiceState:
    service: str
    container_id: str
    state: str
    health: str
    image: ImageRecord
    restarts: int = 0  # how often the engine restarted it (restart policy): a crash loop shows here


@dataclass
class Snapshot:
    """What runs on a host right now."""

    services: dict[str, ServiceState] = field(default_factory=dict)
    targeted: list[TargetedWorker] = field(default_factory=list)
    # Targeted workers whose NAME.ghdeploy-backup exists: a run was stopped while replacing them.
    backups: list[str] = field(default_factory=list)
    # The engine's data root, as the containers' own files show it (see data_root_of); None when
    # no container of ours is there to show it.
    docker_root: str | None = None

    @property
    def empty(self) -> bool:
        """Nothing of the app on the host (a first deploy)."""
        return not self.services and not self.targeted and not self.backups

    @property
    def app_image(self) -> ImageRecord | None:
        """The image of the app (api, else worker): what a rollback puts back."""
        for name in ("api", "worker"):
            if name in self.services and self.services[name].image.image_id:
                return self.services[name].image
        return None


def _repo_digest_for(repo_digests: list[str], ref: str | None) -> str | None:
    """Pick the repo digest of the repository the container was started from."""
    if not repo_digests:
        return None
    if ref:
        name = ref.split("@", 1)[0]
        last = name.rsplit("/", 1)
        if ":" in last[-1]:
            name = name.rsplit(":", 1)[0]
        for digest in repo_digests:
            if digest.split("@", 1)[0] == name:
                return digest
    return repo_digests[0]


def inspect_images(remote: Remote, image_ids: list[str]) -> dict[str, dict[str, Any]]:
    ids = sorted({i for i in image_ids if i})
    if not ids:
        return {}
    api = remote.docker_api()
    if api is not None:
        try:
            return {d["Id"]: d for d in api.inspect_images(ids)}
        except APIUnavailable:
            pass  # the docker CLI below
    result = remote.run(rc.image_inspect(ids))
    # Some may be gone (pruned); docker prints what it found and exits 1.
    try:
        data = json.loads(result.stdout or "[]")
    except ValueError:
        data = []
    return {d["Id"]: d for d in data if isinstance(d, dict) and "Id" in d}


def data_root_of(container: dict[str, Any]) -> str | None:
    """The docker data root a container's files live under: `<root>/containers/<id>/hostname`."""
    path = str(container.get("HostnamePath") or "")
    root, found, _ = path.rpartition("/containers/")
    return root if found and root.startswith("/") else None


def read_snapshot(remote: Remote, layout: rc.RemoteLayout) -> Snapshot:
    """What runs on the host now: the app's compose services and the targeted workers."""
    return snapshot_of(remote, layout, app_containers(remote, layout))


def docker_root_of(containers: list[dict[str, Any]]) -> str | None:
    """The engine's data root, as the first container that shows it has it (data_root_of)."""
    return next((root for root in map(data_root_of, containers) if root), None)


def snapshot_of(remote: Remote, layout: rc.RemoteLayout, containers: list[dict[str, Any]]) -> Snapshot:
    """The snapshot of `containers` (app_containers' answer): their images read, then sorted
    into services and targeted workers."""
    images = inspect_images(remote, [c.get("Image", "") for c in containers])

    def record_for(container: dict[str, Any]) -> ImageRecord:
        image_id = container.get("Image")
        ref = (container.get("Config") or {}).get("Image")
        digests = (images.get(image_id or "") or {}).get("RepoDigests") or []
        return ImageRecord(image_id=image_id, ref=ref, repo_digest=_repo_digest_for(digests, ref))

    snapshot = Snapshot(docker_root=docker_root_of(containers))
    for container in containers:
        labels = (container.get("Config") or {}).get("Labels") or {}
        state = container.get("State") or {}
        service = labels.get("com.docker.compose.service")
        if service and labels.get("com.docker.compose.oneoff") != "True":
            current = snapshot.services.get(service)
            if current is not None and current.state == "running":
                continue  # keep the running one when a service has more than one container
            snapshot.services[service] = ServiceState(
                service=service,
                container_id=container["Id"],
                state=state.get("Status", ""),
                health=(state.get("Health") or {}).get("Status", ""),
                image=record_for(container),
                restarts=int(container.get("RestartCount") or 0),
            )
        elif labels.get("gh.role") == "targeted-worker":
            image = images.get(container.get("Image", "")) or {}
            if not belongs_to(container, image, layout.image_repo):
                continue  # another app's worker on the same host: not ours to touch
            name = str(container.get("Name") or "").lstrip("/")
            if name.endswith(rc.BACKUP_SUFFIX):
                snapshot.backups.append(name[: -len(rc.BACKUP_SUFFIX)])
                continue
            snapshot.targeted.append(
                TargetedWorker(
                    spec=container_spec(container, image),
                    image=record_for(container),
                    status_port=_int_or_none(labels.get("gh.status_port")),
                    running=bool(state.get("Running")),
                    restarts=int(container.get("RestartCount") or 0),
                )
            )
    snapshot.targeted.sort(key=lambda t: t.spec.name)
    snapshot.backups.sort()
    return snapshot


def app_containers(remote: Remote, layout: rc.RemoteLayout) -> list[dict[str, Any]]:
    """`docker inspect` of the app's compose containers and of every targeted worker: through
    the Engine API when the transport reaches it, else the docker CLI (inspect_app_containers)."""
    api = remote.docker_api()
    if api is not None:
        try:
            ours = [c["Id"] for c in api.containers() if _ours(c.get("Labels") or {}, layout)]
            return api.inspect_containers(ours)
        except APIUnavailable:
            pass  # the docker CLI below
    result = remote.run(rc.inspect_app_containers(layout), timeout=60)
    try:
        inspected = json.loads(result.stdout or "[]")
    except ValueError:
        inspected = None
    if not isinstance(inspected, list) or (result.rc != 0 and not inspected):
        # A container removed between `ps` and `inspect` still leaves the others' JSON.
        raise OperationFailed(
            f"{remote.host.label}: could not list the app's containers (exit {result.rc}): {result.stderr.strip()[-300:]}"
        )
    return [c for c in inspected if isinstance(c, dict) and "Id" in c]


def _ours(labels: dict[str, Any], layout: rc.RemoteLayout) -> bool:
    """The filter inspect_app_containers' awk applies: the app directory's compose project, or
    the targeted-worker role (whose app is decided later, by image: belongs_to)."""
    role_key, _, role = rc.TARGETED_LABEL.partition("=")
    return labels.get("com.docker.compose.project.working_dir") == layout.app_dir or labels.get(role_key) == role


def repository_of(ref: str) -> str:
    """registry/repo of a reference (tag and digest dropped)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def belongs_to(container: dict[str, Any], image: dict[str, Any], image_repo: str | None) -> bool:
    """A targeted worker is this app's when its image is from the app's repository (ECR_REGISTRY/ECR_REPOSITORY)."""
    if image_repo is None:
        return True
    ref = str((container.get("Config") or {}).get("Image") or "")
    if ref and not ref.startswith("sha256:") and not all(c in "0123456789abcdef" for c in ref):
        return repository_of(ref) == image_repo  # the name it was started from says whose it is
    # started by image ID: any name of that image in the app's repository
    refs = [str(r) for r in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])]
    return any(repository_of(r) == image_repo for r in refs)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def container_spec(container: dict[str, Any], image: dict[str, Any]) -> ContainerSpec:
    """What to recreate a standalone container with: its own settings, not its image's defaults.

    Environment entries that merely repeat the old image's ENV (COMMIT_SHA, PATH, ...) are left
    out, or the new container would inherit the old build's values. See container_spec/.
    """
    return cspec.from_inspect(container, image)


def local_image(remote: Remote, ref: str) -> dict[str, Any] | None:
    api = remote.docker_api()
    if api is not None:
        try:
            found = api.inspect_images([ref])
            return found[0] if found else None
        except APIUnavailable:
            pass  # the docker CLI below
    result = remote.run(rc.image_inspect([ref]))
    if result.rc != 0:
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return None
    return data[0] if data else None
