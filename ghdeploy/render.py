"""Everything the operator sees: progress on stderr, results on stdout (tables or one JSON document).

Core modules never print; they return data and call a Reporter. This module is the one place
that knows about rich. Progress is a live per-host display on a TTY, plain lines otherwise.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ghdeploy.environment import Environment
from ghdeploy.render_errors import JSON_SCHEMA_VERSION, emit_json, error_json, print_error
from ghdeploy.results import unlabel

__all__ = ["JSON_SCHEMA_VERSION", "emit_json", "error_json", "print_error"]


class ConsoleReporter:
    """A Reporter that draws on the run's stderr. Use as a context manager around the work.

    -v and -q come from `env` unless given (tests give them).
    """

    def __init__(
        self, env: Environment | None = None, *, verbose: int | None = None, quiet: bool | None = None
    ) -> None:
        self.env = env or Environment()
        self.console = console(self.env, stderr=True)
        self.verbose = self.env.verbose if verbose is None else verbose
        self.quiet = self.env.quiet if quiet is None else quiet
        self.live_mode = self.console.is_terminal and not quiet
        self._steps: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live: Any = None
        self._started = self.env.clock()

    def __enter__(self) -> ConsoleReporter:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self, console=self.console, transient=True, refresh_per_second=10)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self) -> Group:
        from rich.spinner import Spinner  # only drawn on a terminal: ~10 ms of imports otherwise

        with self._lock:
            items = list(self._steps.items())
        rows = []
        for host, message in items:
            label = f"{host}: " if host else ""
            rows.append(Spinner("dots", text=Text(f"{label}{message}")))
        return Group(*rows)

    def _plain(self, text: str) -> None:
        self.env.stderr.write(text + "\n")
        self.env.stderr.flush()

    def _elapsed(self) -> str:
        return f"{self.env.clock() - self._started:6.1f}s"

    def step(self, host: str | None, message: str) -> None:
        key = host or ""
        with self._lock:
            if self._steps.get(key) == message:
                return
            self._steps[key] = message
            if host:
                # Once hosts are being worked on, the last global step is history, not activity.
                self._steps.pop("", None)
        if self.quiet:
            return
        if not self.live_mode:
            label = f"{host}: " if host else ""
            self._plain(f"[{self._elapsed()}] {label}{message}")

    def info(self, message: str) -> None:
        if self.quiet:
            return
        if self.live_mode:
            self.console.print(escape(message))
        else:
            self._plain(f"[{self._elapsed()}] {message}")

    def warn(self, message: str) -> None:
        if self.live_mode:
            self.console.print(f"[yellow]warning:[/yellow] {escape(message)}")
        else:
            self._plain(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self.verbose:
            if self.live_mode:
                self.console.print(f"[dim]{escape(message)}[/dim]")
            else:
                self._plain(f"  {message}")


def console(env: Environment, *, stderr: bool = False, **options: Any) -> Console:
    """A rich console on the run's stdout (or stderr), reading the run's environment (NO_COLOR, COLUMNS)."""
    return Console(file=env.stderr if stderr else env.stdout, highlight=False, _environ=env.environ, **options)


def out(env: Environment) -> Console:
    stdout = console(env)
    if not stdout.is_terminal:
        # Piped into a log or a file: don't fold tables at 80 columns.
        stdout = console(env, width=max(stdout.width, 160))
    return stdout


def table(title: str | None, columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for i, c in enumerate(columns):
        # The first column names the host: never folded, so it can be read and grepped whole.
        t.add_column(c, overflow="fold", no_wrap=i == 0)
    return t


# --- results --------------------------------------------------------------------------------


def build_result(outcome: Any, env: Environment) -> int:
    if env.json:
        emit_json(env, "build", {"ok": True, **outcome.to_dict()})
    else:
        out(env).print(
            f"built {outcome.refs[0]} (and :latest)\n  image {outcome.image_id}\n  commit {outcome.commit_sha}"
        )
        if outcome.dirty:
            out(env).print("  [yellow]built from a dirty working tree[/yellow]")
    return 0


def push_result(outcome: Any, env: Environment) -> int:
    if env.json:
        emit_json(env, "push", {"ok": True, **outcome.to_dict()})
    else:
        out(env).print(f"pushed {outcome.refs[0]} and :latest\n  digest {outcome.digest}")
    return 0


_RESULT_STYLE = {
    "succeeded": "green",
    "rolled back": "yellow",
    "rollback failed": "bold red",
    "failed": "red",
    "untouched": "dim",
    "abandoned": "bold yellow",
    "unconfirmed": "bold red",
}


GUARDIAN_DID = {
    "restored": "put back the recorded image by itself",
    "kept": "kept the new image, healthy",
    "failed": "could NOT get healthy by itself: check it",
    "untouched": "freed its lock; nothing had changed",
}


def _next_step(fleet: Any) -> str | None:
    results = {h.result for h in fleet.hosts}
    if "rollback failed" in results:
        return "a host is NOT on a known-good image: check `ghdeploy status`, then `ghdeploy rollback --to TAG` or fix it by hand"
    if "unconfirmed" in results:
        hosts = ", ".join(h.host for h in fleet.hosts if h.result == "unconfirmed")
        return (
            f"could not confirm {hosts}: the connection was lost mid-switch; each heals itself "
            "(puts back the recorded image, frees its lock, records it): check with `ghdeploy status`"
        )
    if "abandoned" in results:
        return "we lost touch mid-switch and the host's guardian took over (see notes); `ghdeploy status` to check"
    if fleet.interrupted:
        return "interrupted: hosts above say where each one is; `ghdeploy status` to check, deploy again when ready"
    if "rolled back" in results:
        return "the new image failed its health check and was rolled back; see the error, fix, deploy again"
    if "failed" in results:
        return "nothing was switched on the failed host; fix the error above and deploy again"
    return None


def deploy_report(report: Any, env: Environment, command: str) -> int:
    code = int(report.exit_code)
    if env.json:
        emit_json(env, command, {"ok": code == 0, "exit_code": code, **report.to_dict()})
        return code
    stdout = out(env)
    if report.plan is not None:
        _plan_text(stdout, report, command, env.verbose)
        return code
    if report.push is not None and report.fleet is None:
        stdout.print(f"pushed {escape(report.push.refs[0])} and :latest\n  digest {report.push.digest}")
    if report.fleet is not None:
        _fleet_text(stdout, report.fleet, f"{command} of {report.tag}")
    if report.verify is not None:
        for row in report.verify:
            mark = "[green]ok[/green]" if row.ok else "[red]MISMATCH[/red]"
            stdout.print(f"verify {escape(row.host)}: {mark} {escape(str(row.running or row.error))}")
    if report.timings:
        stdout.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()))
    hint = _next_step(report.fleet) if report.fleet is not None else None
    if hint:
        console(env, stderr=True).print(f"[cyan]next:[/cyan] {escape(hint)}")
    return code


# Progress steps of the simulated run that say nothing about what would change.
_PLAN_NOISE = ("image ready, waiting for the switch", "preflight", "ready")


def plan_summary(item: dict[str, Any]) -> dict[str, str]:
    """A host's dry run in a few human lines: what runs now, the pull, the steps, where a failure returns."""
    current = item.get("current") or {}
    now = current.get("tag") or current.get("label") or (current.get("image_id") or "")[:19] or "nothing"
    steps = [s for s in item.get("summary") or [] if s not in _PLAN_NOISE]
    pulls = [s for s in steps if s.startswith("pulling ")]
    there = [s for s in steps if s.endswith(" already on host")]
    if pulls:
        pull = pulls[0].replace("pulling ", "pulls ", 1) + " (every host pulls before any host switches)"
    elif there:
        pull = f"no pull: {there[0].removesuffix(' already on host')} is already on the host"
    else:
        pull = "no pull"
    switch = [s for s in steps if not s.startswith("pulling ") and not s.endswith(" already on host")]
    changes = [s for s in item.get("steps") or [] if s.get("changes")]
    back = item.get("current")
    if back:
        failure = f"back to {now}, the exact image it runs now (health-checked again)"
    else:
        failure = "nothing runs there now: there is no earlier image to go back to"
    return {
        "now": str(now),
        "pull": pull,
        "then": " -> ".join(switch) or "nothing",
        "changes": f"{len(changes)} of {len(item.get('commands') or [])} commands change the host",
        "failure": failure,
    }


def _plan_text(console: Console, report: Any, command: str, verbose: int = 0) -> None:
    console.print(f"[bold]dry run[/bold]: {command} of {escape(report.tag)}; nothing was changed")
    for i, item in enumerate(report.plan, 1):
        plan = plan_summary(item)
        lock = item.get("lock")
        console.print(f"\n{i}. [bold]{escape(item['host'])}[/bold]  runs now: {escape(plan['now'])}")
        if lock:
            console.print(f"   [yellow]locked[/yellow]: {escape(json.dumps(lock))}")
        goes_to = (item.get("rollback_to") or {}).get("label") if command == "rollback" else report.tag
        console.print(f"   switches to: {escape(str(goes_to or '?'))}")
        console.print(f"   {escape(plan['pull'])}", soft_wrap=True)
        console.print(f"   then: {escape(plan['then'])}", soft_wrap=True)
        console.print(f"   if it fails: {escape(plan['failure'])}", soft_wrap=True)
        if verbose:
            console.print(f"   exact commands ({escape(plan['changes'])}):")
            for cmd in item["commands"]:
                console.print(f"   $ {escape(cmd)}", soft_wrap=True)
        else:
            console.print(f"   [dim]{escape(plan['changes'])}; -v shows them exactly[/dim]")


def _fleet_text(console: Console, fleet: Any, title: str) -> None:
    t = table(title, ["host", "result", "from", "to", "time", "notes"])
    for h in fleet.hosts:
        style = _RESULT_STYLE.get(h.result, "")
        notes = "; ".join([*(h.notes or []), *([unlabel(h.error, h.host)] if h.error else [])])
        t.add_row(
            escape(h.host),
            f"[{style}]{h.result}[/{style}]" if style else h.result,
            escape(_image_label(h.from_image)),
            escape(h.target.label if h.target else "-"),
            f"{h.duration:.1f}s" if h.duration else "-",
            escape(notes),
        )
    console.print(t)
    c = fleet.counts()
    console.print(
        f"total {c['total']}: {c['succeeded']} succeeded, {c['rolled back']} rolled back, "
        f"{c['rollback failed']} rollback failed, {c['failed']} failed, {c['untouched']} untouched"
        + "".join(f", {c[k]} {k}" for k in ("abandoned", "unconfirmed") if c.get(k))
    )
    for h in fleet.hosts:
        if h.phases:
            console.print(f"phases {escape(h.host)}: " + ", ".join(f"{k} {v:.2f}s" for k, v in h.phases.items()))


def _image_label(image: Any) -> str:
    if image is None:
        return "-"
    return image.tag or (image.image_id or "-")[:19]


# --- agent ----------------------------------------------------------------------------------


def _agent_text(kind: str, data: dict[str, Any]) -> str:
    if kind == "started":
        table = f", fleet table {data['fleet_table']}" if data.get("fleet_table") else ", no fleet table"
        return f"agent started: following {data.get('image')}:{data.get('tag')} every {data.get('interval'):g}s{table} (pid {data.get('pid')})"
    if kind == "stopped":
        return f"agent stopped ({data.get('reason')})"
    digest = (data.get("digest") or "-")[:19]
    running = (data.get("running") or "-")[:19]
    return f"{data.get('action')}: {data.get('tag')} is {digest}, running {running}: {data.get('reason')}"


def agent_event(kind: str, data: dict[str, Any], env: Environment) -> None:
    """One line on stdout per agent event (journald keeps it): plain text, or a JSON object."""
    from ghdeploy.records import now_iso

    when = data.get("time") or now_iso()
    if env.json:
        line = json.dumps({"event": kind, **data, "time": when}, default=str)
    else:
        line = f"{when} {_agent_text(kind, data)}"
    env.stdout.write(line + "\n")
    env.stdout.flush()


def agent_once(data: dict[str, Any], env: Environment) -> int:
    code = int(data.get("exit_code") or 0)
    if env.json:
        emit_json(env, "agent", {"ok": code == 0, **data})
    else:
        env.stdout.write(_agent_text("poll", data) + "\n")
        env.stdout.flush()
    return code


def agent_table_result(data: dict[str, Any], env: Environment) -> int:
    if env.json:
        emit_json(env, "agent init-table", {"ok": True, **data})
    else:
        what = "created" if data.get("created") else "already exists"
        out(env).print(f"fleet table {escape(data['table'])} in {escape(data['region'])}: {what}")
    return 0


def notify_result(outcome: Any, env: Environment) -> int:
    """notify: the deploy id on stdout (for scripts); the receiver's answer or reason on stderr."""
    code = 0 if outcome.ok else 1
    if env.json:
        emit_json(env, "notify", {"exit_code": code, **outcome.to_dict()})
        return code
    err = console(env, stderr=True, soft_wrap=True)
    if not outcome.accepted:
        err.print(
            f"[bold red]refused:[/bold red] the receiver answered {outcome.status_code}: {escape(outcome.reason or '')}"
        )
        return code
    status = outcome.answer.get("status")
    err.print(f"deploy #{outcome.deploy_id} of {escape(outcome.tag)}: {escape(str(status))}")
    if outcome.deploy is not None:
        deploy = outcome.deploy
        style = _RESULT_STYLE.get(deploy.get("status", ""), "")
        final = escape(str(deploy.get("status")))
        err.print(f"deploy #{outcome.deploy_id} ended: " + (f"[{style}]{final}[/{style}]" if style else final))
        for host in deploy.get("hosts") or []:
            detail = f" ({escape(host['error'])})" if host.get("error") else ""
            err.print(f"  {escape(host.get('host', '?'))}: {escape(host.get('result', '?'))}{detail}")
        if deploy.get("error") and not deploy.get("hosts"):
            err.print(f"  {escape(deploy['error'])}")
    env.stdout.write(f"{outcome.deploy_id}\n")
    env.stdout.flush()
    return code


def prune_table(rows: list[Any], env: Environment) -> int:
    """`ghdeploy prune`: per host what was (or would be) removed and kept."""
    from ghdeploy.prune import summary

    failed = any(not r.ok for r in rows)
    if env.json:
        emit_json(env, "prune", {"ok": not failed, "hosts": [r.to_dict() for r in rows]})
        return 1 if failed else 0
    stdout = out(env)
    t = table(None, ["host", "result", "images"])
    for row in rows:
        plan = row.plan
        lines = []
        if plan is not None:
            for removal in plan.remove:
                verb = "untag" if removal.untag_only else ("would remove" if row.dry_run else "removed")
                if not row.dry_run and removal.image_id not in row.removed:
                    verb = "NOT removed"
                lines.append(f"{verb} {', '.join(removal.refs)} ({removal.size // (1024 * 1024)} MB)")
            for image_id, why in plan.keep.items():
                lines.append(f"keep {image_id[7:19]}: {why}")
        t.add_row(row.host, summary(row), "\n".join(lines) or "-")
    stdout.print(t)
    return 1 if failed else 0
