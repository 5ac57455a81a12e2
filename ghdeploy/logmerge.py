"""The pure part of `ghdeploy logs`: which containers, timestamps, the time-ordered merge.

`docker logs --timestamps` prefixes every line with the engine's RFC 3339 time. Each
container's output is one source, already in time order; sources from every host are merged
lazily with a k-way merge (heapq.merge holds one line per source), so memory stays bounded
however long the logs are. Nothing here does I/O: the command feeds it lines.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from ghdeploy.errors import ConfigError

TARGETED = "targeted"

# docker prints RFC3339Nano with a fixed 9-digit fraction in UTC; accept shorter fractions and
# other offsets too (other engines, older versions), normalising them for comparison.
_TS_FAST = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ")
_TS_ANY = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ")
# Go durations as `docker logs --since` takes them (10m, 1h30m, 45s), plus days (2d).
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_DAYS = re.compile(r"^(\d+)d$")
_DATE = re.compile(r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?$")


@dataclass(frozen=True)
class LogSource:
    """One container on one host whose log is read."""

    host: str
    service: str  # compose service name, or the targeted worker's container name
    container_id: str
    running: bool


@dataclass(frozen=True)
class LogLine:
    host: str
    service: str
    time: str | None  # RFC 3339 as the engine printed it; None for a line without one
    key: str  # sort key: normalised UTC time (fixed width), or the previous line's
    text: str

    def to_dict(self) -> dict[str, str | None]:
        return {"host": self.host, "service": self.service, "time": self.time, "line": self.text}


def select_sources(host: str, listing: str, app_dir: str, services: list[str]) -> tuple[list[LogSource], list[str]]:
    """The containers whose logs `--service` asks for on one host, and what else is there.

    With no --service: the app's compose services (not one-off `compose run` containers).
    `targeted` means every targeted worker; any other name is a compose service or a
    targeted worker's container name. Returns (sources, names available on the host).
    """
    compose: list[LogSource] = []
    targeted: list[LogSource] = []
    for line in listing.splitlines():
        fields = line.split("\t")
        if len(fields) != 7 or not fields[0]:
            continue
        cid, name, working_dir, service, oneoff, role, state = fields
        running = state == "running"
        if service and working_dir.rstrip("/") == app_dir.rstrip("/") and oneoff != "True":
            compose.append(LogSource(host, service, cid, running))
        elif role == "targeted-worker":
            targeted.append(LogSource(host, name.lstrip("/"), cid, running))
    available = sorted({s.service for s in compose}) + ([TARGETED] if targeted else [])
    if not services:
        chosen = compose
    else:
        chosen = [s for s in compose + targeted if s.service in services or (TARGETED in services and s in targeted)]
    # A service recreated by compose may leave an old stopped container beside the running one.
    return _label_duplicates(sorted(chosen, key=lambda s: (s.service, not s.running, s.container_id))), available


def _label_duplicates(sources: list[LogSource]) -> list[LogSource]:
    seen: dict[str, int] = {}
    out = []
    for source in sources:
        n = seen.get(source.service, 0)
        seen[source.service] = n + 1
        out.append(
            source
            if n == 0
            else LogSource(source.host, f"{source.service}#{n + 1}", source.container_id, source.running)
        )
    return out


def normalise_since(value: str | None, now: datetime | None = None) -> str | None:
    """--since as docker takes it: a Go duration (10m, 1h30m), days (2d) or a date/time."""
    if value is None:
        return None
    text = value.strip()
    if _DURATION.match(text):
        return text
    days = _DAYS.match(text)
    if days:
        return f"{int(days.group(1)) * 24}h"
    if _DATE.match(text):
        return text.replace(" ", "T")
    raise ConfigError(
        f"--since {value!r} is neither a duration nor a date",
        "use e.g. --since 10m, --since 2h30m, --since 2d or --since 2026-02-18T12:00:00Z",
    )


def time_key(raw: bytes) -> tuple[str | None, str | None, bytes]:
    """(time as printed, sort key, rest of the line) of one `docker logs -t` line."""
    fast = _TS_FAST.match(raw)
    if fast:
        stamp = fast.group(0)[:-1].decode()
        fraction = (fast.group(2) or b"").decode().ljust(9, "0")
        return stamp, f"{fast.group(1).decode()}.{fraction}", raw[fast.end() :]
    other = _TS_ANY.match(raw)
    if other:
        stamp = other.group(1).decode()
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None, None, raw
        return stamp, moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000", raw[other.end() :]
    return None, None, raw


def parse_lines(source: LogSource, raw_lines: Iterable[bytes]) -> Iterator[LogLine]:
    """LogLines of one source. A line without a timestamp (a message of the docker CLI itself)
    sorts with the line before it, so the source stays in order."""
    last = ""
    for raw in raw_lines:
        stamp, key, rest = time_key(raw)
        if key is None:
            key = last
        last = key
        yield LogLine(source.host, source.service, stamp, key, rest.decode("utf-8", "replace").rstrip("\r"))


def merge(streams: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """One time-ordered stream from many time-ordered ones, holding one line per stream."""
    return heapq.merge(*streams, key=lambda line: line.key)


def matches(line: LogLine, grep: str | None) -> bool:
    return grep is None or grep in line.text
