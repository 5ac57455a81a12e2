"""Read-only views of the fleet: status, verify, history, locks. All hosts are asked at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy import agent_status, hostdata, hostops, locks
from ghdeploy import remote_commands as rc
from ghdeploy import remote_day2 as day2
from ghdeploy.errors import GhdeployError, problem_kind
from ghdeploy.hostfit import facts_from_df, parse_facts
from ghdeploy.records import LockInfo
from ghdeploy.waiting import get_json, worker_health

if TYPE_CHECKING:
    from ghdeploy.transports.ssh import Connection


@dataclass
class HostStatus:
    host: str
    error: str | None = None
    services: list[dict[str, Any]] = field(default_factory=list)
    targeted: list[dict[str, Any]] = field(default_factory=list)
    worker: dict[str, Any] | None = None
    health: int | None = None
    version: dict[str, Any] | None = None
    last_deploy: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None
    lock: LockInfo | None = None
    agent: dict[str, Any] | None = None  # the host's `ghdeploy agent`, from its heartbeat file
    disk: dict[str, Any] | None = None  # the docker data root: path, architecture, free/size bytes
    problem: str | None = None  # why the host could not be read, in a word or two ("unknown host key")
    hint: str | None = None  # what to do about it: the same hint `deploy` gives

    @classmethod
    def unreadable(cls, host: str, exc: GhdeployError) -> HostStatus:
        return cls(host=host, error=str(exc), problem=problem_kind(exc), hint=exc.hint)

    @property
    def ok(self) -> bool:
        return self.error is None and self.health == 200 and self.pending is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "error": self.error,
            "health": self.health,
            "version": self.version,
            "worker": self.worker,
            "services": self.services,
            "targeted_workers": self.targeted,
            "last_deploy": self.last_deploy,
            "unfinished_deploy": self.pending,
            "lock": self.lock.to_dict() if self.lock is not None else None,
            "agent": self.agent,
            "problem": self.problem,
            "hint": self.hint,
            "disk": self.disk,
        }


def _image_dict(image: hostops.ImageRecord) -> dict[str, Any]:
    return {"tag": image.tag, "ref": image.ref, "image_id": image.image_id, "digest": image.digest}


def host_status(conn: Connection, layout: rc.RemoteLayout, api_port: int, worker_port: int) -> HostStatus:
    """Everything `status` shows for one host. All the reads (containers, HTTP endpoints,
    ghdeploy's own records) run at once over the one SSH connection."""
    from concurrent.futures import ThreadPoolExecutor

    status = HostStatus(host=conn.host.label)

    def containers(arch: str) -> None:
        from ghdeploy.snapshot import app_containers, docker_root_of, snapshot_of

        found = app_containers(conn, layout)
        # The disk is read while the images are: the containers' files already name the root.
        with ThreadPoolExecutor(max_workers=1) as side:
            disk_read = side.submit(disk, docker_root_of(found), arch)
            snapshot = snapshot_of(conn, layout, found)
            disk_read.result()
        for name, svc in sorted(snapshot.services.items()):
            status.services.append(
                {"service": name, "state": svc.state, "health": svc.health or None, **_image_dict(svc.image)}
            )
        for worker in snapshot.targeted:
            item: dict[str, Any] = {
                "name": worker.spec.name,
                "worker_id": worker.spec.labels.get("gh.worker_id"),
                "status_port": worker.status_port,
                "running": worker.running,
                **_image_dict(worker.image),
            }
            if worker.running and worker.status_port:
                with conn.http_client(timeout=3.0) as http:
                    item["worker"] = hostdata.worker(worker_health(http, worker.status_port))
            status.targeted.append(item)

    def endpoints() -> None:
        with conn.http_client(timeout=3.0) as http:
            code, _ = get_json(http, f"http://localhost:{api_port}/health")
            status.health = code
            code, body = get_json(http, f"http://localhost:{api_port}/health/version")
            status.version = hostdata.version(body) if code == 200 else None
            status.worker = hostdata.worker(worker_health(http, worker_port))

    # ghdeploy's own records, the architecture and how the host's docker CLI reaches its engine:
    # one command (day2.status_reads), then the containers through the engine's API it named.
    # The HTTP endpoints are read meanwhile. On many hosts at once the hosts' own work (a session
    # and a process per command) is what queues, so the host runs two commands: this and `df`.
    def records_then_containers() -> None:
        from ghdeploy.host_records import parse_history, parse_json, pending_from

        argv = day2.status_reads(layout, agent_status.path(layout))
        sections = day2.split_sections(conn.run(argv, timeout=30).stdout)
        records, _ = parse_history(sections["history"])
        status.last_deploy = records[-1] if records else None
        status.pending = pending_from(sections["pending"])
        status.lock = locks.from_text(sections["lock"])
        status.agent = agent_status.summary(parse_json(sections["agent"]))
        conn.docker_api(probe=sections["docker"])
        containers(sections["arch"].strip())

    def disk(docker_root: str | None, arch: str) -> None:
        # The containers' files name the data root, so the host runs `df` and no docker command
        # for it; only when no container of ours shows the root does it ask `docker info`
        # (host_facts), which starts every CLI plugin: 60-200 ms.
        if docker_root and arch:
            facts = facts_from_df(docker_root, arch, conn.run(day2.disk_of(docker_root), timeout=30).stdout)
        else:
            facts = parse_facts(conn.run(day2.host_facts(), timeout=30).stdout)
        status.disk = facts.to_dict() if facts else None

    reads = (records_then_containers, endpoints)
    with ThreadPoolExecutor(max_workers=len(reads)) as pool:
        futures = [pool.submit(fn) for fn in reads]
        for future in futures:
            try:
                future.result()
            except GhdeployError as exc:
                status.error = status.error or str(exc)
    return status
