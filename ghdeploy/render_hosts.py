"""Results of the commands that read hosts (status, verify, history, lock, hosts): tables or one
JSON document. Split from render.py, which keeps progress, deploy reports and the rest.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from ghdeploy.environment import Environment
from ghdeploy.render import GUARDIAN_DID, emit_json, out, table
from ghdeploy.results import rows_exit_code, unlabel


def _disk_cell(disk: dict[str, Any] | None) -> str:
    """Free space on the docker data root: what the next pull needs (`ghdeploy prune` frees it)."""
    if not disk or disk.get("free_bytes") is None:
        return "-"
    free, size = disk["free_bytes"], disk.get("size_bytes") or 0
    text = f"{free / 1024**3:.1f} GB"
    if size:
        share = free / size
        text += f" ({share:.0%})"
        if share < 0.1:
            return f"[red]{escape(text)}[/red]"
    return escape(text)


def status_table(rows: list[Any], env: Environment) -> int:
    code = int(rows_exit_code(rows))
    if env.json:
        emit_json(env, "status", {"ok": code == 0, "hosts": [r.to_dict() for r in rows]})
        return code
    columns = [
        "host",
        "health",
        "image",
        "api",
        "worker",
        "version",
        "targeted workers",
        "last deploy",
        "agent",
        "disk free",
    ]
    failed = any(r.error for r in rows)
    t = table("status", [*columns, "problem"] if failed else columns)
    for r in rows:
        if r.error:
            # The reason gets a column of its own (not "last deploy"), with what to do about it.
            reason = escape(unlabel(r.error, r.host)) + (f"\n[cyan]hint:[/cyan] {escape(r.hint)}" if r.hint else "")
            problem = getattr(r, "problem", None) or "unreachable"
            t.add_row(escape(r.host), f"[red]{escape(problem)}[/red]", "", "", "", "", "", "", "", "", reason)
            continue
        health = "[green]200[/green]" if r.health == 200 else f"[red]{r.health or 'down'}[/red]"
        svc = {s["service"]: s for s in r.services}
        api_svc, worker_svc = svc.get("api"), svc.get("worker")
        main = api_svc or worker_svc
        image = "-"
        if main:
            image = main.get("tag") or (main.get("image_id") or "")[:19]
            if main.get("digest"):
                image += f" @{main['digest'][7:19]}"

        def state(s: dict[str, Any] | None) -> str:
            if not s:
                return "absent"
            return s["state"] + (f" ({s['health']})" if s.get("health") else "")

        worker = state(worker_svc)
        if r.worker:
            worker += f", {r.worker.get('status')}"
        version = "-"
        if r.version:
            uptime = int((r.version.get("uptime_ms") or 0) / 1000)
            version = (
                f"{(r.version.get('commit_sha') or '')[:12]} built {r.version.get('build_time') or '?'} up {uptime}s"
            )
        targeted = (
            ", ".join(
                f"{w['name']} {w.get('tag')}{'' if w['running'] else ' (stopped)'}"
                + (f" {w['worker'].get('status')}" if w.get("worker") else "")
                for w in r.targeted
            )
            or "-"
        )
        last = "-"
        if r.last_deploy:
            ld = r.last_deploy
            to = (ld.get("to") or {}).get("label") or ""
            last = f"{ld.get('action')} {to} {ld.get('result')} {_ago(ld.get('time'))} by {ld.get('operator')}"
            if ld.get("result") == "abandoned":
                # The driver vanished mid-way and the host's guardian finished it: say what it did.
                last += f" (ghdeploy vanished; the host {GUARDIAN_DID.get(str(ld.get('guardian')), 'finished it')})"
        if r.pending:
            unfinished = f"UNFINISHED {r.pending.get('action')} since {r.pending.get('time')}"
            last = f"[red]{escape(unfinished)}[/red]; {escape(last)}"
        else:
            last = escape(last)
        if r.lock is not None and r.lock.to_dict():  # an empty record (not an object) is not shown
            last = f"[yellow]locked by {escape(str(r.lock.operator))}[/yellow]; " + last
        t.add_row(
            escape(r.host),
            health,
            escape(image),
            escape(state(api_svc)),
            escape(worker),
            escape(version),
            escape(targeted),
            last,
            _agent_cell(r.agent) if r.agent else "-",
            _disk_cell(r.disk),
            *([""] if failed else []),
        )
    out(env).print(t)
    return code


def _agent_cell(agent: dict[str, Any]) -> str:
    """`status`'s word on the host's agent: running or not, the tag it follows, its last poll."""
    state = (
        f"[green]{escape(agent['state'])}[/green]" if agent.get("running") else f"[red]{escape(agent['state'])}[/red]"
    )
    text = f"agent {state} following :{escape(str(agent.get('tag')))}"
    last = agent.get("last_result") or {}
    if agent.get("last_poll"):
        text += f", polled {_ago(agent['last_poll'])}"
    if last:
        text += f": {escape(str(last.get('action')))}"
        if last.get("action") not in ("none", None) or last.get("exit_code"):
            text += f" ({escape(str(last.get('reason'))[:80])})"
    return text


def _ago(when: str | None) -> str:
    from ghdeploy.locks import age

    return age(when)


def verify_table(rows: list[Any], env: Environment) -> int:
    code = int(rows_exit_code(rows))
    source = next((r.expected_from for r in rows if getattr(r, "expected_from", None)), None)
    note = next((r.note for r in rows if getattr(r, "note", None)), None)
    if env.json:
        emit_json(
            env,
            "verify",
            {
                "ok": code == 0,
                "expected": rows[0].expected if rows else None,
                "expected_from": source,
                "note": note,
                "hosts": [r.to_dict() for r in rows],
            },
        )
        return code
    t = table("verify", ["host", "result", "running", "expected", "image tag", "built"])
    for r in rows:
        result = "[green]ok[/green]" if r.ok else ("[red]error[/red]" if r.error else "[red]MISMATCH[/red]")
        t.add_row(
            escape(r.host),
            result,
            escape(r.running or r.error or "-"),
            r.expected,
            escape(r.image_tag or "-"),
            escape(r.build_time or "-"),
        )
    console = out(env)
    console.print(t)
    if rows and source:
        console.print(f"expected {escape(rows[0].expected)}: {escape(source)}")
    if note and code:
        console.print(f"[yellow]hint:[/yellow] {escape(note)}")
    return code


def history_table(rows: list[Any], env: Environment) -> int:
    code = 0 if all(r.error is None for r in rows) else 1  # no hosts: nothing failed
    if env.json:
        emit_json(env, "history", {"ok": code == 0, "hosts": [r.to_dict() for r in rows]})
        return code
    t = table("history", ["host", "time", "action", "from", "to", "result", "operator", "duration", "message"])
    for r in rows:
        if r.error:
            t.add_row(escape(r.host), "", "", "", "", "[red]unreachable[/red]", "", "", escape(r.error))
            continue
        if not r.records:
            t.add_row(escape(r.host), "-", "[dim]no records[/dim]", "", "", "", "", "", "")
        for rec in r.records:
            frm = rec.get("from") or {}
            to = rec.get("to") or {}
            t.add_row(
                escape(r.host),
                escape(str(rec.get("time"))),
                escape(str(rec.get("action"))),
                escape(str(frm.get("tag") or (frm.get("image_id") or "-")[:19])),
                escape(str(to.get("label") or "-")),
                escape(str(rec.get("result"))),
                escape(str(rec.get("operator"))),
                f"{rec.get('duration_s') or 0:.1f}s" if isinstance(rec.get("duration_s"), int | float) else "-",
                escape(str(rec.get("message") or "")),
            )
    out(env).print(t)
    return code


def lock_table(rows: list[Any], env: Environment, command: str) -> int:
    from ghdeploy.locks import age

    code = 0 if all(r.error is None for r in rows) else 1  # no hosts: nothing failed
    if env.json:
        emit_json(env, command, {"ok": code == 0, "hosts": [r.to_dict() for r in rows]})
        return code
    t = table(command, ["host", "lock", "operator", "since", "action", "message"])
    for r in rows:
        if r.error:
            t.add_row(escape(r.host), "[red]unreachable[/red]", "", "", "", escape(r.error))
        elif r.holder is None:
            t.add_row(escape(r.host), "free", "", "", "", "")
        else:
            h = r.holder
            state = "[green]released[/green]" if getattr(r, "released", False) else "[yellow]held[/yellow]"
            t.add_row(
                escape(r.host),
                state,
                escape(str(h.operator)),
                escape(f"{h.since} ({age(h.since)})"),
                escape(f"{h.action} {h.tag}"),
                escape(str(h.message or "")),
            )
    out(env).print(t)
    return code


def hosts_list(hosts: list[Any], notes: list[str], source: str, env: Environment) -> int:
    if env.json:
        emit_json(
            env,
            "hosts",
            {
                "ok": True,
                "source": source,
                "hosts": [{"host": h.label, "user": h.user, "hostname": h.hostname, "port": h.port} for h in hosts],
                "skipped": notes,
            },
        )
        return 0
    console = out(env)
    console.print(f"{len(hosts)} host(s) from {escape(source)}, in deploy order:")
    for i, h in enumerate(hosts, 1):
        console.print(f"  {i}. {escape(h.label)}")
    for note in notes:
        console.print(f"  [dim]{escape(note)}[/dim]")
    return 0
