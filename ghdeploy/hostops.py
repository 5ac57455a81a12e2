"""Reading and changing one host: what runs there, its records, its targeted workers.

Every remote command comes from remote_commands (data); this module runs them through a
connection and turns their output into data.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import container_spec as cspec
from ghdeploy import records
from ghdeploy import remote_commands as rc
from ghdeploy.container_spec import ContainerSpec
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
    return layout.image_repo is not None and _repository(image) == layout.image_repo


def _repository(ref: str) -> str:
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
        return _repository(ref) == image_repo  # the name it was started from says whose it is
    # started by image ID: any name of that image in the app's repository
    refs = [str(r) for r in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])]
    return any(_repository(r) == image_repo for r in refs)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def container_spec(container: dict[str, Any], image: dict[str, Any]) -> ContainerSpec:
    """What to recreate a standalone container with: its own settings, not its image's defaults.

    Environment entries that merely repeat the old image's ENV (COMMIT_SHA, PATH, ...) are left
    out, or the new container would inherit the old build's values. See container_spec.py.
    """
    return cspec.from_inspect(container, image)


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


def append_record(remote: Remote, layout: rc.RemoteLayout, record: records.HistoryRecord | dict[str, Any]) -> None:
    if not isinstance(record, records.HistoryRecord):  # a record built as a dict goes through the same writer
        record = records.HistoryRecord.from_dict(record) or records.HistoryRecord()
    line = records.history_line(record)
    remote.check(rc.append_file(layout.state_dir, layout.history_file), stdin=line.encode())


def write_pending(remote: Remote, layout: rc.RemoteLayout, record: records.PendingRecord | dict[str, Any]) -> None:
    if not isinstance(record, records.PendingRecord):
        record = records.PendingRecord.from_dict(record) or records.PendingRecord()
    text = records.pending_text(record)
    remote.check(rc.write_file(layout.state_dir, layout.pending_file), stdin=text.encode())


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
    data = read_json(remote, rc.read_file(layout.pending_file))
    return clean_record(data) if data else data


def read_history(
    remote: Remote, layout: rc.RemoteLayout, limit: int = 20, warnings: list[str] | None = None
) -> list[dict[str, Any]]:
    """The last `limit` records of the host's history; a line that is not a record is skipped,
    with a warning appended to `warnings` (a half-written line, a hand edit)."""
    text = remote.run(rc.tail_file(layout.history_file, limit), timeout=60).stdout
    records, problems = parse_history(text)
    if warnings is not None:
        warnings += [f"{remote.host.label}: {layout.history_file}: {p}" for p in problems]
    return records


def parse_history(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if isinstance(item, dict):
            records.append(clean_record(item))
        else:
            problems.append(f"skipped line {number} of the last read: not a JSON record ({line[:60]!r})")
    return records, problems


def clean_record(data: dict[str, Any]) -> dict[str, Any]:
    """A history/pending record with the types readers rely on (a host's file may hold anything)."""
    from ghdeploy import hostdata

    record = records.HistoryRecord.from_dict(hostdata.record(data))
    return record.to_dict() if record else {}


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
