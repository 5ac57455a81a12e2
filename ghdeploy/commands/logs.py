"""`ghdeploy logs`: the app's container logs from every host at once.

Per host: one SSH connection, one `docker ps` to find the containers, then one SSH channel per
container running `docker logs --timestamps` (see remote_day2.container_logs). Without
--follow the channels are merged in time order by a lazy k-way merge (logmerge.merge), so
memory holds one line per container plus each channel's flow-control window, whatever the
size of the logs. With --follow, lines are printed as they arrive, from whichever host.

A host that stops answering is noticed by an SSH keepalive every couple of seconds (TCP alone
takes minutes), reported, and dropped; the other hosts keep streaming.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ghdeploy import logmerge
from ghdeploy import remote_day2 as day2
from ghdeploy.config import Config
from ghdeploy.errors import ConfigError, ExitCode, GhdeployError
from ghdeploy.hosts import Host, narrow
from ghdeploy.logmerge import LogLine, LogSource
from ghdeploy.progress import Reporter

if TYPE_CHECKING:
    from ghdeploy.transports.ssh import Connection
    from ghdeploy.transports.ssh.stream import RemoteStream

DEFAULT_TAIL = 200
PING_EVERY = 2.0  # seconds between keepalives to each host
PING_TIMEOUT = 5.0  # no answer within this: the host is reported lost and dropped
QUEUE_LINES = 2000  # --follow: lines in flight between the readers and the printer
RELIST_FOR = 60.0  # --follow: after a container's log ends, look for its successor this long


@dataclass(frozen=True)
class LogsOptions:
    services: list[str] = field(default_factory=list)
    since: str | None = None
    tail: int | None = None
    follow: bool = False
    grep: str | None = None

    def effective_tail(self) -> int | None:
        # Without --since, an unbounded `docker logs` of a months-old container is gigabytes.
        if self.tail is not None:
            return self.tail
        return None if self.since else DEFAULT_TAIL


class LogSink(Protocol):
    closed: bool  # True once nobody reads any more (stdout closed): stop

    def line(self, line: LogLine) -> None: ...

    def notice(self, message: str) -> None: ...


@dataclass
class LogsOutcome:
    hosts: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # host -> why it gave no (or not all) logs
    lines: int = 0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return int(ExitCode.OK)  # Ctrl-C is how --follow ends
        return int(ExitCode.FAILED) if self.failed else int(ExitCode.OK)


@dataclass
class _HostLogs:
    host: Host
    conn: Connection | None = None
    sources: list[tuple[LogSource, RemoteStream]] = field(default_factory=list)
    available: list[str] = field(default_factory=list)
    error: str | None = None
    # --follow: containers being streamed now, the last timestamp read from each (a restarted
    # container is picked up again from there), and until when to look for replacements.
    active: set[str] = field(default_factory=set)
    last: dict[str, tuple[str, str]] = field(default_factory=dict)
    relist_until: float = 0.0


class _Session:
    """The open connections and streams of one `logs` run, and who has dropped out."""

    def __init__(self, config: Config, options: LogsOptions, sink: LogSink, accept_new: bool) -> None:
        self.options = options
        self.sink = sink
        self.app_dir = config.text("GHOSTHANDS_DIR").rstrip("/") or "/"
        from ghdeploy.engine.connect import ssh_settings  # the light fan-out module, not the deploy engine

        self.settings = ssh_settings(config, accept_new)
        self.stopping = threading.Event()
        self.lost: dict[str, str] = {}
        self.on_lost: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self.hosts: list[_HostLogs] = []

    def open_host(self, host: Host) -> _HostLogs:
        """Connect, find the containers, start one `docker logs` per container."""
        from ghdeploy.transports.ssh import connect

        item = _HostLogs(host)
        try:
            item.conn = connect(host, self.settings)
            listing = item.conn.run(day2.log_containers(), timeout=30)
            if listing.rc != 0:
                item.error = f"`docker ps` failed (exit {listing.rc}): {listing.stderr.strip()[-200:]}"
                return item
            sources, item.available = logmerge.select_sources(
                host.label, listing.stdout, self.app_dir, self.options.services
            )
            for source in sources:
                argv = day2.container_logs(
                    source.container_id,
                    since=self.options.since,
                    tail=self.options.effective_tail(),
                    follow=self.options.follow,
                )
                item.sources.append((source, item.conn.stream(argv)))
                item.active.add(source.container_id)
        except GhdeployError as exc:
            item.error = str(exc)
        return item

    def watch(self, item: _HostLogs, attach: Callable[[LogSource, RemoteStream], None] | None = None) -> None:
        """Keepalive loop: a host that stops answering is closed, which ends its streams.

        With `attach` (--follow), a host whose container's log ended (a deploy replaced it, or it
        restarted) is listed again every tick for a minute (a host streaming nothing, always),
        and each running container of the selection not being streamed is attached: a
        replacement from its start, a restarted one from its last line read.
        """
        conn = item.conn
        assert conn is not None
        while not self.stopping.wait(PING_EVERY):
            if not conn.ping(PING_TIMEOUT):
                if not self.stopping.is_set():
                    self.mark_lost(item.host.label, f"no answer to SSH keepalives for {PING_TIMEOUT:g} s")
                conn.close()
                return
            if attach is not None and (time.monotonic() < item.relist_until or not item.active):
                try:
                    self._reattach(item, conn, attach)
                except GhdeployError:
                    continue  # the next tick's keepalive tells whether the host is gone

    def _reattach(self, item: _HostLogs, conn: Connection, attach: Callable[[LogSource, RemoteStream], None]) -> None:
        listing = conn.run(day2.log_containers(), timeout=30)
        if listing.rc != 0:
            return
        sources, _ = logmerge.select_sources(item.host.label, listing.stdout, self.app_dir, self.options.services)
        for source in sources:
            if not source.running or source.container_id in item.active:
                continue
            since = item.last.get(source.container_id, (None, ""))[0]
            argv = day2.container_logs(source.container_id, since=since, tail=None, follow=True)
            item.active.add(source.container_id)
            self.sink.notice(f"{item.host.label} {source.service}: following {source.container_id[:12]}")
            attach(source, conn.stream(argv))

    def mark_lost(self, host: str, why: str) -> None:
        with self._lock:
            first = host not in self.lost
            self.lost.setdefault(host, why)
        if first:
            others = "the other hosts keep streaming" if self.options.follow else "its lines stop here"
            self.sink.notice(f"{host}: connection lost ({why}); {others}")
            if self.on_lost is not None:
                self.on_lost(host)

    def ended(self, source: LogSource, stream: RemoteStream) -> str | None:
        """Why a source's stream ended, when that is worth saying (None: it simply finished)."""
        if self.stopping.is_set():
            return None
        if stream.connection_lost:
            self.mark_lost(source.host, "the SSH connection closed")
            return "lost"
        status = stream.exit_status()
        if status is None and not stream.connection_lost:
            return None
        if status == 0:
            if self.options.follow:
                self.sink.notice(
                    f"{source.host} {source.service}: log ended (the container stopped or was replaced); "
                    "watching for its successor"
                )
            return None
        self.sink.notice(f"{source.host} {source.service}: `docker logs` failed (exit {status}) {stream.stderr_tail()}")
        return "failed"

    def close(self) -> None:
        self.stopping.set()
        for item in self.hosts:
            if item.conn is not None:
                item.conn.close()


def targets(config: Config, only: list[str], reporter: Reporter) -> list[Host]:
    """The hosts to read (EC2_HOST or the ASG's instances, narrowed by --host)."""
    if config.get("ASG_NAME"):
        # boto3 is slower than these imports anyway
        from ghdeploy.commands.common import resolve_hosts
        from ghdeploy.engine.connect import HostOptions

        return resolve_hosts(config, HostOptions(only=only), reporter)
    return narrow(config.hosts, only)


def _report_host(
    session: _Session,
    item: _HostLogs,
    outcome: LogsOutcome,
    attach: Callable[[LogSource, RemoteStream], None] | None = None,
) -> None:
    label = item.host.label
    if item.error:
        outcome.failed[label] = item.error
        session.sink.notice(f"{label}: {item.error}")
    elif not item.sources:
        wanted = ", ".join(session.options.services) or "the app's compose services"
        have = ", ".join(item.available) or "none"
        session.sink.notice(f"{label}: no container for {wanted} (there: {have})")
    if item.conn is not None and not item.error and (item.sources or attach is not None):
        threading.Thread(target=session.watch, args=(item, attach), daemon=True).start()


def logs(
    config: Config,
    hosts: list[Host],
    reporter: Reporter,
    options: LogsOptions,
    sink: LogSink,
    *,
    accept_new_host_key: bool = False,
) -> LogsOutcome:
    if options.since is not None:
        options = LogsOptions(
            options.services, logmerge.normalise_since(options.since), options.tail, options.follow, options.grep
        )
    if options.tail is not None and options.tail < 0:
        raise ConfigError(f"-n {options.tail}: the number of lines must be 0 or more")
    session = _Session(config, options, sink, accept_new_host_key)
    outcome = LogsOutcome(hosts=[h.label for h in hosts])
    try:
        if options.follow:
            _follow(session, hosts, outcome)
        else:
            _merged(session, hosts, outcome)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        session.close()
    for host, why in session.lost.items():
        outcome.failed.setdefault(host, f"connection lost: {why}")
    if not outcome.interrupted and not outcome.failed and not any(item.sources for item in session.hosts):
        raise ConfigError(
            f"no container for {', '.join(options.services) or 'the app'} on any host",
            "see `ghdeploy status` for what runs where; --service takes api, worker, another compose "
            "service, targeted, or a targeted worker's name",
        )
    return outcome


def _merged(session: _Session, hosts: list[Host], outcome: LogsOutcome) -> None:
    """Every container's log up to now, merged in time order."""
    with ThreadPoolExecutor(max_workers=min(32, len(hosts) or 1)) as pool:
        session.hosts = list(pool.map(session.open_host, hosts))
    for item in session.hosts:
        _report_host(session, item, outcome)

    def lines(source: LogSource, stream: RemoteStream) -> Iterator[LogLine]:
        yield from logmerge.parse_lines(source, stream.lines())
        if session.ended(source, stream) == "failed":
            outcome.failed.setdefault(source.host, f"`docker logs` of {source.service} failed")

    streams = [lines(source, stream) for item in session.hosts for source, stream in item.sources]
    for line in logmerge.merge(streams):
        if logmerge.matches(line, session.options.grep):
            outcome.lines += 1
            session.sink.line(line)
            if session.sink.closed:
                return


class _Follower:
    """--follow: one reader thread per container stream, all feeding one bounded queue that the
    main thread prints from (so Ctrl-C is heard there, and lines never interleave mid-line)."""

    def __init__(self, session: _Session, outcome: LogsOutcome) -> None:
        self.session = session
        self.outcome = outcome
        self.events: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=QUEUE_LINES)

    def read(self, item: _HostLogs, source: LogSource, stream: RemoteStream) -> None:
        cid = source.container_id
        resume = item.last.get(cid, ("", ""))[1]  # a restarted container: skip what was already shown
        for line in logmerge.parse_lines(source, stream.lines()):
            if line.time is not None:
                if line.key <= resume:
                    continue
                item.last[cid] = (line.time, line.key)
            if logmerge.matches(line, self.session.options.grep):
                self.events.put(("line", line))
        item.active.discard(cid)
        item.relist_until = time.monotonic() + RELIST_FOR
        self.events.put(("end", (source, stream)))

    def attach_to(self, item: _HostLogs) -> Callable[[LogSource, RemoteStream], None]:
        def attach(source: LogSource, stream: RemoteStream) -> None:
            threading.Thread(target=self.read, args=(item, source, stream), daemon=True).start()

        return attach

    def start(self, host: Host) -> None:
        item = self.session.open_host(host)
        self.session.hosts.append(item)
        self.events.put(("host", item))
        for source, stream in item.sources:
            self.attach_to(item)(source, stream)

    def handle(self, kind: str, payload: object, alive: set[str]) -> None:
        if kind == "line":
            assert isinstance(payload, LogLine)
            self.outcome.lines += 1
            self.session.sink.line(payload)
        elif kind == "host":
            assert isinstance(payload, _HostLogs)
            _report_host(self.session, payload, self.outcome, self.attach_to(payload))
            if payload.error:
                alive.discard(payload.host.label)
        elif kind == "lost":
            alive.discard(str(payload))
        else:
            assert isinstance(payload, tuple)
            ended_source, ended_stream = payload
            self.session.ended(ended_source, ended_stream)


def _follow(session: _Session, hosts: list[Host], outcome: LogsOutcome) -> None:
    """Lines as they come from any host, until Ctrl-C or until no host is left."""
    follower = _Follower(session, outcome)
    session.on_lost = lambda label: follower.events.put(("lost", label))
    for host in hosts:
        threading.Thread(target=follower.start, args=(host,), daemon=True).start()
    alive = {h.label for h in hosts}
    while alive and not session.sink.closed:
        try:
            kind, payload = follower.events.get(timeout=0.25)
        except queue.Empty:
            continue
        follower.handle(kind, payload, alive)
