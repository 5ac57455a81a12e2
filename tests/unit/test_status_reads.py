"""`status`'s one command for the host's own records (remote_day2.status_reads), run by a real
`sh` on files laid out as on a host, then split and read the way `status` reads them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ghdeploy import agent_status, docker_api, locks
from ghdeploy import remote_commands as rc
from ghdeploy import remote_day2 as day2
from ghdeploy.host_records import parse_history, parse_json, pending_from


def run(layout: rc.RemoteLayout, tmp_path: Path, **env: str) -> dict[str, str]:
    argv = day2.status_reads(layout, agent_status.path(layout))
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    proc = subprocess.run(argv, env={**base, **env}, capture_output=True, text=True, check=True)
    return day2.split_sections(proc.stdout)


def test_a_host_with_nothing_yet(tmp_path: Path) -> None:
    layout = rc.RemoteLayout(app_dir=str(tmp_path / "app"), compose_file=str(tmp_path / "app/c.yml"))
    sections = run(layout, tmp_path)
    assert parse_history(sections["history"]) == ([], [])
    assert pending_from(sections["pending"]) is None
    assert locks.from_text(sections["lock"]) is None
    assert parse_json(sections["agent"]) is None
    assert docker_api.parse_probe(sections["docker"]) == docker_api.DEFAULT_SOCKET


def test_every_record_read_in_one_command(tmp_path: Path) -> None:
    app = tmp_path / "app with space"
    layout = rc.RemoteLayout(app_dir=str(app), compose_file=str(app / "c.yml"))
    state = Path(layout.state_dir)
    state.mkdir(parents=True)
    first, last = {"action": "deploy", "result": "failed"}, {"action": "rollback", "result": "succeeded"}
    # The newest history line without its newline (a writer killed mid-way still ends a line,
    # but a hand edit may not): the section marker must still start a line of its own.
    Path(layout.history_file).write_text(json.dumps(first) + "\n" + json.dumps(last))
    Path(layout.pending_file).write_text(json.dumps({"action": "deploy", "operator": "ops@laptop"}))
    Path(layout.lock_dir).mkdir()  # a lock taken by a run killed before it wrote its record
    Path(agent_status.path(layout)).write_text(json.dumps({"state": "idle"}) + "\n")
    sections = run(layout, tmp_path, DOCKER_HOST="unix:///run/docker-h1.sock", DOCKER_CONTEXT="")
    records, problems = parse_history(sections["history"])
    assert [r["action"] for r in records] == ["rollback"] and problems == []
    pending = pending_from(sections["pending"])
    assert pending is not None and pending["operator"] == "ops@laptop"
    assert locks.from_text(sections["lock"]) is not None  # held, record unreadable: still held
    assert parse_json(sections["agent"]) == {"state": "idle"}
    assert docker_api.parse_probe(sections["docker"]) == "/run/docker-h1.sock"

    (Path(layout.lock_dir) / "info.json").write_text(json.dumps({"operator": "ops@laptop", "lock_id": "abc"}))
    lock = locks.from_text(run(layout, tmp_path)["lock"])
    assert lock is not None and lock.operator == "ops@laptop"


def test_the_docker_lines_keep_their_places(tmp_path: Path) -> None:
    layout = rc.RemoteLayout(app_dir=str(tmp_path), compose_file=str(tmp_path / "c.yml"))
    # No DOCKER_HOST but a context: the empty first line must not be lost (the CLI is used then).
    assert docker_api.parse_probe(run(layout, tmp_path, DOCKER_CONTEXT="rootless")["docker"]) is None
    config = tmp_path / "home" / ".docker"
    config.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps({"auths": {"r": {"auth": "c2VjcmV0"}}, "currentContext": "x"}))
    sections = run(layout, tmp_path)
    assert "c2VjcmV0" not in "".join(sections.values())
    assert docker_api.parse_probe(sections["docker"]) is None


def test_split_sections_ignores_what_it_does_not_know() -> None:
    text = f"junk\n{day2.SECTION_MARK}history\n{{}}\n{day2.SECTION_MARK}other\nx\n"
    sections = day2.split_sections(text)
    assert sections["history"].strip() == "{}" and "other" not in sections and sections["agent"] == ""
