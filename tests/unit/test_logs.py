"""`ghdeploy logs`: the container selection, timestamps, the time-ordered merge and the printing."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghdeploy import logmerge
from ghdeploy import remote_commands as rc
from ghdeploy import remote_day2 as day2
from ghdeploy.commands.logs import LogsOptions, LogsOutcome
from ghdeploy.errors import ConfigError
from ghdeploy.logmerge import LogLine, LogSource
from ghdeploy.render_logs import LogPrinter

APP = "/opt/ghosthands"


def row(
    cid: str, name: str, wd: str = APP, service: str = "", oneoff: str = "False", role: str = "", state: str = "running"
) -> str:
    return "\t".join([cid, name, wd, service, oneoff, role, state])


LISTING = "\n".join(
    [
        row("c1", "gh-api-1", service="api"),
        row("c2", "gh-worker-1", service="worker"),
        row("c3", "gh-worker-2", service="worker", state="exited"),
        row("c4", "gh-api-run-1", service="api", oneoff="True"),
        row("c5", "other-web-1", wd="/srv/other", service="web"),
        row("c6", "gh-targeted-a", wd="", role="targeted-worker"),
        row("c7", "plain", wd=""),
        "garbage line",
    ]
)


def test_default_is_the_apps_compose_services_only() -> None:
    sources, available = logmerge.select_sources("h1", LISTING, APP + "/", [])
    assert [(s.service, s.container_id) for s in sources] == [("api", "c1"), ("worker", "c2"), ("worker#2", "c3")]
    assert available == ["api", "worker", "targeted"]


def test_service_targeted_and_names() -> None:
    sources, _ = logmerge.select_sources("h1", LISTING, APP, ["targeted"])
    assert [(s.service, s.container_id) for s in sources] == [("gh-targeted-a", "c6")]
    sources, _ = logmerge.select_sources("h1", LISTING, APP, ["api", "gh-targeted-a"])
    assert [s.container_id for s in sources] == ["c1", "c6"]
    # another application's service of that name is never picked
    sources, _ = logmerge.select_sources("h1", LISTING, APP, ["web"])
    assert sources == []


def test_time_key_normalises_fractions_and_offsets() -> None:
    stamp, key, rest = logmerge.time_key(b"2026-11-27T03:10:00.123456789Z hello world")
    assert (stamp, key, rest) == ("2026-11-27T03:10:00.123456789Z", "2026-11-27T03:10:00.123456789", b"hello world")
    _, short, _ = logmerge.time_key(b"2026-11-27T03:10:00.12Z x")
    assert short == "2026-11-27T03:10:00.120000000"
    _, none_frac, _ = logmerge.time_key(b"2026-11-27T03:10:00Z x")
    assert none_frac == "2026-11-27T03:10:00.000000000"
    _, offset, _ = logmerge.time_key(b"2026-11-27T04:10:00.5+01:00 x")
    assert offset == "2026-11-27T03:10:00.500000000"
    assert logmerge.time_key(b"Error response from daemon: gone") == (None, None, b"Error response from daemon: gone")


def _lines(source: LogSource, *texts: str) -> list[bytes]:
    return [t.encode() for t in texts]


def test_merge_orders_across_hosts_and_keeps_untimed_lines_in_place() -> None:
    a = LogSource("h1", "api", "c1", True)
    b = LogSource("h2", "api", "c2", True)
    one = logmerge.parse_lines(
        a, _lines(a, "2026-01-01T00:00:01.000000000Z a1", "no stamp", "2026-01-01T00:00:03.000000000Z a3")
    )
    two = logmerge.parse_lines(b, _lines(b, "2026-01-01T00:00:00.5Z b0", "2026-01-01T00:00:02.000000000Z b2"))
    merged = [(line.host, line.text) for line in logmerge.merge([one, two])]
    assert merged == [("h2", "b0"), ("h1", "a1"), ("h1", "no stamp"), ("h2", "b2"), ("h1", "a3")]


def test_merge_is_lazy_one_line_per_source() -> None:
    """Bounded memory: the merge never reads a source further than the line it needs next."""
    pulled = {"a": 0, "b": 0}

    def endless(name: str, offset: int) -> Iterator[LogLine]:
        i = 0
        while True:
            pulled[name] += 1
            key = f"2026-01-01T00:00:{i:02d}.{offset:09d}"
            yield LogLine(name, "api", key, key, f"{name}{i}")
            i += 1

    merged = logmerge.merge([endless("a", 0), endless("b", 1)])
    first = [next(merged).text for _ in range(6)]
    assert first == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert pulled["a"] <= 4 and pulled["b"] <= 4


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("10m", "10m"),
        ("1h30m", "1h30m"),
        ("45s", "45s"),
        ("2d", "48h"),
        ("2026-02-18", "2026-02-18"),
        ("2026-02-18 12:00:00", "2026-02-18T12:00:00"),
        ("2026-02-18T12:00:00Z", "2026-02-18T12:00:00Z"),
    ],
)
def test_since_accepts_durations_days_and_dates(given: str, expected: str) -> None:
    assert logmerge.normalise_since(given) == expected


@pytest.mark.parametrize("bad", ["yesterday", "10 m", "-5m", "$(id)", ""])
def test_since_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        logmerge.normalise_since(bad)


def test_container_logs_argv_runs_docker_with_both_streams_on_stdout(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\necho "to stderr" >&2\n')
    fake.chmod(0o755)
    evil = "c1; rm -rf / $(id)"
    argv = day2.container_logs(evil, since="10m", tail=5, follow=True)
    proc = subprocess.run(
        ["sh", "-c", rc.render(argv)], capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    )
    assert proc.stdout.splitlines() == [
        "arg:logs",
        "arg:--timestamps",
        "arg:--since",
        "arg:10m",
        "arg:--tail",
        "arg:5",
        "arg:--follow",
        "arg:--",
        f"arg:{evil}",
        "to stderr",
    ]
    assert proc.stderr == ""
    assert "--follow" not in day2.container_logs("c", since=None, tail=None, follow=False)


def test_printer_aligns_prefixes_and_prints_plain_when_not_a_terminal() -> None:
    out = io.StringIO()
    printer = LogPrinter(["root@10.0.0.1", "h2"], out=out, err=io.StringIO())
    printer.line(LogLine("h2", "api", "2026-01-01T00:00:00Z", "k", "hello"))
    printer.line(LogLine("root@10.0.0.1", "worker", None, "k", "bye"))
    assert out.getvalue().splitlines() == ["h2            api    | hello", "root@10.0.0.1 worker | bye"]
    assert "\x1b" not in out.getvalue()


def test_printer_timestamps_and_json() -> None:
    out = io.StringIO()
    LogPrinter(["h1"], out=out, timestamps=True).line(LogLine("h1", "api", "2026-01-01T00:00:00Z", "k", "x"))
    assert out.getvalue() == "h1 api    | 2026-01-01T00:00:00Z x\n"
    out = io.StringIO()
    printer = LogPrinter(["h1"], out=out, as_json=True)
    printer.line(LogLine("h1", "api", "2026-01-01T00:00:00Z", "k", 'say "hi"'))
    printer.line(LogLine("h1", "worker", None, "k", "untimed"))
    docs = [json.loads(text) for text in out.getvalue().splitlines()]
    assert docs == [
        {"host": "h1", "service": "api", "time": "2026-01-01T00:00:00Z", "line": 'say "hi"'},
        {"host": "h1", "service": "worker", "time": None, "line": "untimed"},
    ]


def test_printer_colours_each_host_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Tty()
    printer = LogPrinter(["h1", "h2"], out=out)
    printer.line(LogLine("h1", "api", None, "k", "a"))
    printer.line(LogLine("h2", "api", None, "k", "b"))
    first, second = out.getvalue().splitlines()
    assert first.startswith("\x1b[") and second.startswith("\x1b[")
    assert first.split("m", 1)[0] != second.split("m", 1)[0]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in LogPrinter(["h1"], out=Tty()).format(LogLine("h1", "api", None, "k", "a"))


def test_tail_defaults_and_exit_codes() -> None:
    assert LogsOptions().effective_tail() == 200
    assert LogsOptions(since="10m").effective_tail() is None
    assert LogsOptions(tail=0, since="10m").effective_tail() == 0
    assert LogsOutcome(hosts=["h1"]).exit_code == 0
    assert LogsOutcome(hosts=["h1"], failed={"h1": "lost"}).exit_code == 1
    assert LogsOutcome(hosts=["h1"], failed={"h1": "lost"}, interrupted=True).exit_code == 0


def test_global_flags_after_logs_options_are_hoisted_but_values_are_not() -> None:
    from ghdeploy.cli import hoist_global_flags

    assert hoist_global_flags(["logs", "-f", "--grep", "x", "--json"]) == ["--json", "logs", "-f", "--grep", "x"]
    # a value that looks like a global flag stays the option's value
    assert hoist_global_flags(["logs", "--grep", "--json"]) == ["logs", "--grep", "--json"]
    assert hoist_global_flags(["logs", "--timestamps", "--json"]) == ["--json", "logs", "--timestamps"]
