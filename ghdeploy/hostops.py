"""Reading and changing one host: what runs there, its records, its targeted workers.

Every remote command comes from remote_commands (data); this module runs them through a
connection and turns their output into data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import remote_commands as rc
from ghdeploy.errors import OperationFailed

if TYPE_CHECKING:
    from ghdeploy.transports.base import CommandResult, Remote


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
    spec: rc.ContainerSpec
    image: ImageRecord
    status_port: int | None
    running: bool


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
    result = remote.run(rc.image_inspect(ids))
    # Some may be gone (pruned); docker prints what it found and exits 1.
    try:
        data = json.loads(result.stdout or "[]")
    except ValueError:
        data = []
    return {d["Id"]: d for d in data if isinstance(d, dict) and "Id" in d}


def read_snapshot(remote: Remote, layout: rc.RemoteLayout) -> Snapshot:
    """What runs on the host now: the app's compose services and the targeted workers."""
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
    containers = [c for c in inspected if isinstance(c, dict) and "Id" in c]
    images = inspect_images(remote, [c.get("Image", "") for c in containers])

    def record_for(container: dict[str, Any]) -> ImageRecord:
        image_id = container.get("Image")
        ref = (container.get("Config") or {}).get("Image")
        digests = (images.get(image_id or "") or {}).get("RepoDigests") or []
        return ImageRecord(image_id=image_id, ref=ref, repo_digest=_repo_digest_for(digests, ref))

    snapshot = Snapshot()
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
            snapshot.targeted.append(
                TargetedWorker(
                    spec=container_spec(container, image),
                    image=record_for(container),
                    status_port=_int_or_none(labels.get("gh.status_port")),
                    running=bool(state.get("Running")),
                )
            )
    snapshot.targeted.sort(key=lambda t: t.spec.name)
    return snapshot


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def container_spec(container: dict[str, Any], image: dict[str, Any]) -> rc.ContainerSpec:
    """What to recreate a standalone container with: its own settings, not its image's defaults.

    Environment entries that merely repeat the old image's ENV (COMMIT_SHA, PATH, ...) are left
    out, or the new container would inherit the old build's values.
    """
    config = container.get("Config") or {}
    host_config = container.get("HostConfig") or {}
    image_config = image.get("Config") or {}
    image_env = set(image_config.get("Env") or [])
    env = [e for e in (config.get("Env") or []) if e not in image_env]
    image_labels = image_config.get("Labels") or {}
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    ports: list[str] = []
    for container_port, bindings in sorted((host_config.get("PortBindings") or {}).items()):
        for binding in bindings or []:
            host_ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
            prefix = f"{host_ip}:" if host_ip else ""
            ports.append(f"{prefix}{host_port}:{container_port}" if host_port else f"{prefix}:{container_port}")
    policy = host_config.get("RestartPolicy") or {}
    restart = policy.get("Name") or None
    if restart == "no":
        restart = None
    elif restart == "on-failure" and policy.get("MaximumRetryCount"):
        restart = f"on-failure:{policy['MaximumRetryCount']}"
    network = host_config.get("NetworkMode") or None
    if network == "default":
        network = None
    entrypoint = config.get("Entrypoint")
    own_entrypoint = entrypoint != image_config.get("Entrypoint")
    cmd = config.get("Cmd")
    name = (container.get("Name") or "").lstrip("/")
    return rc.ContainerSpec(
        name=name,
        labels=labels,
        env=env,
        network=network,
        ports=ports,
        restart=restart,
        memory=host_config.get("Memory") or None,
        entrypoint=entrypoint if own_entrypoint else None,
        # `docker run --entrypoint` clears the image's CMD, so with our own entrypoint the command is always passed.
        cmd=cmd if own_entrypoint or cmd != image_config.get("Cmd") else None,
    )


def recreate_targeted(remote: Remote, layout: rc.RemoteLayout, worker: TargetedWorker, image: str) -> None:
    env_text = "".join(f"{line}\n" for line in worker.spec.env)
    remote.check(rc.run_container(layout, worker.spec, image), stdin=env_text.encode())


def append_record(remote: Remote, layout: rc.RemoteLayout, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    remote.check(rc.append_file(layout.state_dir, layout.history_file), stdin=line.encode())


def write_pending(remote: Remote, layout: rc.RemoteLayout, record: dict[str, Any]) -> None:
    remote.check(rc.write_file(layout.state_dir, layout.pending_file), stdin=json.dumps(record).encode())


def clear_pending(remote: Remote, layout: rc.RemoteLayout) -> None:
    remote.run(rc.remove_file(layout.pending_file))


def read_json(remote: Remote, argv: list[str]) -> dict[str, Any] | None:
    """Run a command that prints a JSON object, or nothing when there is none."""
    text = remote.run(argv, timeout=30).stdout.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return data if isinstance(data, dict) else {}


def read_pending(remote: Remote, layout: rc.RemoteLayout) -> dict[str, Any] | None:
    return read_json(remote, rc.read_file(layout.pending_file))


def read_history(remote: Remote, layout: rc.RemoteLayout, limit: int = 20) -> list[dict[str, Any]]:
    text = remote.run(rc.tail_file(layout.history_file, limit)).stdout
    records: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            records.append(item)
    return records


def local_image(remote: Remote, ref: str) -> dict[str, Any] | None:
    result = remote.run(rc.image_inspect([ref]))
    if result.rc != 0:
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return None
    return data[0] if data else None


def require_ok(result: CommandResult, what: str, host: str) -> str:
    if result.rc != 0:
        raise OperationFailed(f"{host}: {what} failed (exit {result.rc}): {result.stderr.strip()[-300:]}")
    return result.stdout
