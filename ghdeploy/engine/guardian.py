"""The host's own dead-man's switch: what runs on a host if whoever drives a deploy vanishes.

Why a switch on the host: the laptop (or the receiver, or the agent) may die at any line: kill -9,
a closed lid, a cut link. Whatever it was doing, the host must end, by itself, healthy on the
recorded or the new image, with its lock free and a history record saying what happened. Only
the host can promise that, and it has nothing but sshd, docker + compose v2 and a POSIX sh.

So, right after a host's lock is taken, the driver starts GUARDIAN_SCRIPT on the host, detached
from the SSH session (`setsid`, else `nohup`; stdin/stdout/stderr away from the channel), and
keeps pushing its deadline forward (`renew`, every RENEW_EVERY s, to LEASE s ahead on the
host's own clock). If the deadline passes, the guardian fires:

- it takes the state token (`armed` -> `fired`, an atomic rename: the driver's disarm uses the
  same token, so exactly one of them wins), waits for a driver command still running on the
  host (every changing command runs through FENCE, which leaves its pid in `inflight` and
  refuses to start once the guardian fired);
- by the phase the driver had reached it: `locked` (nothing changed) frees the lock; `recorded`
  (the driver already wrote its history record) frees the lock; `changing` puts back the
  recorded image by its exact reference (computed by the driver before the first change) with
  `docker compose up -d` and recreates the worker (a worker asked to drain never takes work
  again); `confirmed` (the new image had passed its health check) keeps the new image if the
  api still runs it healthy, else puts back the recorded one;
- waits for the api to be healthy (see HEALTH below), appends the record the driver prepared
  (result `abandoned`, with the reason), removes pending.json once the host is healthy again,
  and frees the lock only if it is still this deploy's lock.

HEALTH on the host, with no curl promised: the api container must run the expected image and be
`running`; then `curl` or `wget` on the host, when there is one, must get 200 from /health; without
either, the compose healthcheck (which the GhostHands compose file defines on /health) must say
`healthy`; with neither a tool nor a healthcheck, the container must stay running, never
restarted, for 10 s. The worker must be running on the same image.

Every script here is a constant; every value reaches it as a positional parameter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghdeploy.errors import GhdeployError

if TYPE_CHECKING:
    from ghdeploy.hosts import Host
    from ghdeploy.remote_commands import RemoteLayout
    from ghdeploy.transports.base import CommandResult, Remote
    from ghdeploy.transports.http11 import Client

Argv = list[str]

# Without a renewal for LEASE seconds the host heals itself. The driver renews every RENEW_EVERY
# seconds, and notices a dead link within 15 s (ssh.py), so a live driver is never overtaken.
LEASE = 15
RENEW_EVERY = 5
# Exit status of a guarded command (and of renew/phase/record/finish) once the guardian fired.
TOOK_OVER = 86
PHASES = ("locked", "changing", "confirmed", "recorded")
# Lines of the records file the guardian picks from (1-based, as sed counts).
RECORD_LINES = {"restored": 1, "kept": 2, "failed": 3, "untouched": 4}
OUTCOMES = tuple(RECORD_LINES)

GUARDIAN_SCRIPT = r"""
G=$1 role=$2 lock_dir=$3 lock_id=$4 hist=$5 pending=$6 compose=$7 app=$8
old_ref=$9 old_id=${10} new_ref=${11} new_id=${12} stop_t=${13} health_t=${14} port=${15}
shift 15
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
log() { echo "$(now) guardian $$ ($role): $*"; }
num() { case $1 in ''|*[!0-9]*) echo "$2" ;; *) echo "$1" ;; esac; }
stop_t=$(num "$stop_t" 35); health_t=$(num "$health_t" 60); port=$(num "$port" 3100)
echo $$ > "$G/pid.$$" && mv -f "$G/pid.$$" "$G/pid" || exit 1
log "watching (deadline in $G/deadline)"
held=0
while :; do
  [ "$(cat "$G/pid" 2>/dev/null)" = "$$" ] || { log "handed over to $(cat "$G/pid" 2>/dev/null)"; exit 0; }
  if [ -f "$G/armed" ]; then
    held=0
    dl=$(num "$(cat "$G/deadline" 2>/dev/null)" 0)
    if [ "$(date +%s)" -ge "$dl" ]; then
      mv "$G/armed" "$G/fired" 2>/dev/null && break
    fi
  elif [ -f "$G/held" ]; then
    # The driver's record step holds the token for a moment; one that never gives it back died.
    held=$((held + 1))
    if [ "$held" -ge 15 ]; then mv "$G/held" "$G/fired" 2>/dev/null && break; fi
  else
    log "disarmed"; exit 0
  fi
  sleep 1
done
phase=$(cat "$G/phase" 2>/dev/null)
case $phase in locked|changing|confirmed|recorded) ;; *) phase=changing ;; esac
log "fired: no renewal from the driver; phase $phase"
ip=$(num "$(cat "$G/inflight" 2>/dev/null)" "")
if [ -n "$ip" ] && kill -0 "$ip" 2>/dev/null; then
  log "waiting for the driver's last command (pid $ip)"
  i=0
  while kill -0 "$ip" 2>/dev/null && [ "$i" -lt $((stop_t + 10)) ]; do sleep 1; i=$((i + 1)); done
  kill "$ip" 2>/dev/null && sleep 2
fi
[ "$role" = switch ] || { [ "$phase" = recorded ] || phase=locked; }
cd "$app" 2>/dev/null || cd /
dc() { ECR_IMAGE=$1; export ECR_IMAGE; shift; docker compose -f "$compose" "$@"; }
probe() {
  if command -v curl >/dev/null 2>&1; then curl -fsS -m 2 -o /dev/null "http://localhost:$port/health" 2>/dev/null
  elif command -v wget >/dev/null 2>&1; then wget -q -T 2 -O /dev/null "http://localhost:$port/health" 2>/dev/null
  else return 2; fi
}
# state SERVICE REF: "IMAGE STATUS RESTARTS HEALTH" of the service's container, or nothing
state() {
  c=$(dc "$2" ps -q "$1" 2>/dev/null | head -n 1)
  [ -n "$c" ] || return 1
  docker inspect --format '{{.Image}} {{.State.Status}} {{.RestartCount}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$c" 2>/dev/null
}
steady=0
# healthy REF ID: the api runs ID and answers (see the module docstring); the worker runs ID
healthy() {
  set -- "$1" "$2" $(state api "$1")
  [ "$3" = "$2" ] && [ "$4" = running ] || { steady=0; return 1; }
  probe; p=$?
  if [ "$p" = 2 ]; then
    case $6 in
      healthy) ;;
      none) steady=$((steady + 1)); [ "$steady" -ge 10 ] || return 1 ;;
      *) return 1 ;;
    esac
  elif [ "$p" != 0 ]; then
    return 1
  fi
  set -- "$1" "$2" $(state worker "$1")
  [ "$3" = "$2" ] && [ "$4" = running ]
}
wait_healthy() {
  end=$(( $(date +%s) + health_t + 15 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    healthy "$1" "$2" && return 0
    sleep 1
  done
  return 1
}
outcome=untouched; img=
case $phase in
  recorded) outcome=recorded ;;
  locked) outcome=untouched ;;
  *)
    if [ "$phase" = confirmed ] && [ -n "$new_id" ] && healthy "$new_ref" "$new_id"; then
      log "the new image runs healthy: keeping it"; outcome=kept; img=$new_id
    else
      if [ -n "$old_ref" ] && [ -n "$old_id" ]; then ref=$old_ref; id=$old_id; good=restored
      else ref=$new_ref; id=$new_id; good=kept; fi
      log "putting back $ref"
      dc "$ref" up -d --timeout "$stop_t" api || log "compose up api failed"
      dc "$ref" up -d --no-deps --force-recreate --timeout "$stop_t" worker || log "compose up worker failed"
      for name in "$@"; do
        [ "$(docker inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = false ] && docker start "$name" >/dev/null
      done
      if wait_healthy "$ref" "$id"; then outcome=$good; img=$id; else outcome=failed; fi
    fi ;;
esac
log "outcome: $outcome"
case $img in *[!a-z0-9:]*) img= ;; esac
case $outcome in restored) n=1 ;; kept) n=2 ;; failed) n=3 ;; untouched) n=4 ;; *) n= ;; esac
if [ -n "$n" ] && [ -f "$G/records" ]; then
  line=$(sed -n "${n}p" "$G/records" | sed -e "s/@@TIME@@/$(now)/" -e "s/@@PHASE@@/$phase/" -e "s/@@IMAGE_ID@@/$img/")
  if [ -n "$line" ]; then
    mkdir -p "$(dirname "$hist")"
    if [ -s "$hist" ] && [ -n "$(tail -c 1 "$hist")" ]; then echo >> "$hist"; fi
    printf '%s\n' "$line" >> "$hist"
  fi
fi
[ "$outcome" = failed ] || rm -f "$pending"
if [ -d "$lock_dir" ] && grep -qF "$lock_id" "$lock_dir/info.json" 2>/dev/null; then
  rm -rf "$lock_dir" && log "lock freed"
fi
echo "$outcome" > "$G/result.tmp" && mv -f "$G/result.tmp" "$G/result"
log "done"
"""

# Starts a guardian instance detached from the session; prints its pid once it runs. The new
# instance writes its pid into $G/pid, and an older instance (the lock-phase one) sees that and
# retires: the hand-over never leaves the host unwatched. stdin holds the records file.
LAUNCH_SCRIPT = r"""
g=$1; s=$2; shift 2
umask 077; mkdir -p "$g" || exit 1
cat > "$g/records.tmp" && mv -f "$g/records.tmp" "$g/records" || exit 1
old=$(cat "$g/pid" 2>/dev/null)
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$s" ghdeploy-guardian "$g" "$@" </dev/null >>"$g/log" 2>&1 &
else
  nohup sh -c "$s" ghdeploy-guardian "$g" "$@" </dev/null >>"$g/log" 2>&1 &
fi
i=0
while [ $i -lt 100 ]; do
  p=$(cat "$g/pid" 2>/dev/null)
  if [ -n "$p" ] && [ "$p" != "$old" ]; then echo "$p"; exit 0; fi
  sleep 0.05; i=$((i + 1))
done
echo "the guardian did not start (see $g/log)" >&2; exit 1
"""

# The first arm of a deploy: a fresh directory, the deadline, the token. Guardian directories
# of earlier deploys are removed once their guardian has ended.
PREPARE_SCRIPT = r"""
root=$1; g=$2; lease=$3
umask 077; mkdir -p "$root" || exit 1
for d in "$root"/*; do
  [ -d "$d" ] && [ "$d" != "$g" ] || continue
  p=$(cat "$d/pid" 2>/dev/null)
  if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then rm -rf "$d"; fi
done
mkdir -p "$g" || exit 1
echo $(( $(date +%s) + lease )) > "$g/deadline" && echo locked > "$g/phase" && : > "$g/armed"
"""

RENEW_SCRIPT = r"""
d=$(( $(date +%s) + $2 )) || exit 1
echo "$d" > "$1/deadline.tmp" && mv -f "$1/deadline.tmp" "$1/deadline" || exit 1
[ -f "$1/armed" ] || [ -f "$1/held" ] || exit 86
"""

PHASE_SCRIPT = r"""
echo "$2" > "$1/phase.tmp" && mv -f "$1/phase.tmp" "$1/phase" || exit 1
[ -f "$1/armed" ] || exit 86
"""

# Runs a changing command only while the guardian has not fired; leaves its pid for the guardian
# to wait on. The pid is written BEFORE the token is checked, so either the command sees the
# guardian fired, or the guardian sees the command and waits for it.
FENCE_SCRIPT = r"""
g=$1; shift
echo $$ > "$g/inflight"
[ -f "$g/armed" ] || exit 86
exec "$@"
"""

# The driver's own history record is written between HOLD and UNHOLD (with the driver's usual
# commands): the guardian cannot fire meanwhile, and gives a hold that lasts 15 s up for dead.
HOLD_SCRIPT = r"""
mv "$1/armed" "$1/held" 2>/dev/null || exit 86
"""

UNHOLD_SCRIPT = r"""
if [ "$2" = recorded ]; then echo recorded > "$1/phase.tmp" && mv -f "$1/phase.tmp" "$1/phase"; fi
mv "$1/held" "$1/armed"
"""

# Disarm for good, once the driver has freed the lock itself.
DISARM_SCRIPT = r"""
mv "$1/armed" "$1/done" 2>/dev/null || exit 86
"""

# The end of the deploy on this host: disarm for good, then free the lock if it is still ours.
FINISH_SCRIPT = r"""
g=$1 lock_dir=$2 lock_id=$3
exec </dev/null >/dev/null 2>&1
mv "$g/armed" "$g/done" 2>/dev/null || exit 86
test -d "$lock_dir" || exit 0
grep -qF "$lock_id" "$lock_dir/info.json" 2>/dev/null || exit 75
rm -rf -- "$lock_dir"
"""

# What the guardian is doing: token, phase, result ("" while none), and its pid's liveness.
STATE_SCRIPT = r"""
g=$1
tok=none
for t in armed held fired done; do [ -f "$g/$t" ] && tok=$t; done
p=$(cat "$g/pid" 2>/dev/null)
alive=no; [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=yes
echo "$tok $(cat "$g/phase" 2>/dev/null || echo none) $alive $(cat "$g/result" 2>/dev/null)"
"""


def guardian_root(layout: RemoteLayout) -> str:
    return f"{layout.state_dir}/guardian"


def guardian_dir(layout: RemoteLayout, lock_id: str) -> str:
    if not lock_id or not all(c in "0123456789abcdef" for c in lock_id):
        raise ValueError(f"lock id {lock_id!r} is not hex")
    return f"{guardian_root(layout)}/{lock_id}"


@dataclass(frozen=True)
class SwitchPlan:
    """What the guardian needs to put a host back: all computed by the driver before any change."""

    compose_file: str
    app_dir: str
    restore_ref: str  # names exactly the recorded image on the host; "" when nothing ran before
    restore_id: str  # the recorded image's ID; "" when nothing ran before
    new_ref: str
    new_id: str
    stop_timeout: int
    health_timeout: float
    api_port: int
    targeted: tuple[str, ...] = ()  # targeted workers to start again if found stopped


def prepare(layout: RemoteLayout, lock_id: str, lease: int = LEASE) -> Argv:
    return ["sh", "-c", PREPARE_SCRIPT, "sh", guardian_root(layout), guardian_dir(layout, lock_id), str(lease)]


def launch(layout: RemoteLayout, lock_id: str, plan: SwitchPlan | None) -> Argv:
    """Start a guardian: lock-only (plan None) or for the switch (plan given)."""
    g = guardian_dir(layout, lock_id)
    common = [layout.lock_dir, lock_id, layout.history_file, layout.pending_file]
    if plan is None:
        values = ["lock", *common, layout.compose_file, layout.app_dir, "", "", "", "", "", "", ""]
    else:
        values = [
            "switch",
            *common,
            plan.compose_file,
            plan.app_dir,
            plan.restore_ref,
            plan.restore_id,
            plan.new_ref,
            plan.new_id,
            str(int(plan.stop_timeout)),
            str(int(plan.health_timeout)),
            str(int(plan.api_port)),
            *plan.targeted,
        ]
    return ["sh", "-c", LAUNCH_SCRIPT, "sh", g, GUARDIAN_SCRIPT, *values]


def renew(g: str, lease: int = LEASE) -> Argv:
    return ["sh", "-c", RENEW_SCRIPT, "sh", g, str(lease)]


def set_phase(g: str, phase: str) -> Argv:
    if phase not in PHASES:
        raise ValueError(f"unknown guardian phase {phase!r}")
    return ["sh", "-c", PHASE_SCRIPT, "sh", g, phase]


def fence(g: str, argv: Argv) -> Argv:
    return ["sh", "-c", FENCE_SCRIPT, "sh", g, *argv]


def finish(g: str, layout: RemoteLayout, lock_id: str) -> Argv:
    return ["sh", "-c", FINISH_SCRIPT, "sh", g, layout.lock_dir, lock_id]


def hold(g: str) -> Argv:
    return ["sh", "-c", HOLD_SCRIPT, "sh", g]


def unhold(g: str, recorded: bool) -> Argv:
    return ["sh", "-c", UNHOLD_SCRIPT, "sh", g, "recorded" if recorded else "same"]


def disarm(g: str) -> Argv:
    return ["sh", "-c", DISARM_SCRIPT, "sh", g]


def read_state(g: str) -> Argv:
    return ["sh", "-c", STATE_SCRIPT, "sh", g]


# --- the records the guardian may write ------------------------------------------------------


def record_lines(base: dict[str, Any], lease: int = LEASE) -> bytes:
    """The four history records the guardian picks from, one JSON line each (RECORD_LINES).

    `base` is the record the driver would write itself (action, operator, from, to, ...). The
    guardian fills in @@TIME@@, @@PHASE@@ and @@IMAGE_ID@@ with values it checked.
    """
    who = base.get("operator") or "?"
    gone = f"ghdeploy ({who}) stopped answering during the @@PHASE@@ phase (no sign of it for {lease}s)"
    variants = {
        "restored": (f"{gone}; the host put back the recorded image by itself", "@@IMAGE_ID@@"),
        "kept": (f"{gone}; the new image ran healthy, the host kept it", "@@IMAGE_ID@@"),
        "failed": (f"{gone}; the host could not get a healthy api and worker by itself: check it", None),
        "untouched": (f"{gone}, before this host was changed; the host freed its lock", None),
    }
    lines = []
    for outcome in OUTCOMES:
        error, image_id = variants[outcome]
        item = {
            **base,
            "time": "@@TIME@@",
            "result": "abandoned",
            "error": error,
            "image_id": image_id,
            "guardian": outcome,
            "duration_s": None,
        }
        lines.append(json.dumps(item, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


# --- the driver's side -----------------------------------------------------------------------


class GuardianTookOver(GhdeployError):
    """The host's guardian fired: the driver was silent too long; the host heals itself."""


@dataclass
class State:
    token: str  # armed | held | fired | done | none
    phase: str
    alive: bool
    result: str | None

    @classmethod
    def parse(cls, text: str) -> State:
        parts = text.split()
        while len(parts) < 4:
            parts.append("")
        return cls(token=parts[0] or "none", phase=parts[1], alive=parts[2] == "yes", result=parts[3] or None)


@dataclass
class Guard:
    """One host's guardian as the driver sees it. Thread-safe enough: renew runs on its own."""

    conn: Remote
    layout: RemoteLayout
    lock_id: str
    lease: int = LEASE
    last_renewal: float = field(default_factory=time.monotonic)
    fired: bool = False
    error: str | None = None

    @property
    def dir(self) -> str:
        return guardian_dir(self.layout, self.lock_id)

    @property
    def label(self) -> str:
        host: Host = self.conn.host
        return host.label

    def _run(self, argv: Argv, *, stdin: bytes | None = None, timeout: float = 30) -> CommandResult:
        result = self.conn.run(argv, stdin=stdin, timeout=timeout)
        if result.rc == TOOK_OVER:
            self.fired = True
            raise GuardianTookOver(
                f"{self.label}: the host's guardian took over (ghdeploy was out of touch for {self.lease}s); "
                "the host heals itself"
            )
        return result

    def _require(self, result: CommandResult, what: str) -> CommandResult:
        if result.rc != 0:
            raise GhdeployError(f"{self.label}: {what} failed (exit {result.rc}): {result.stderr.strip()[-300:]}")
        return result

    def arm(self, records: bytes) -> None:
        """Right after the lock: a lock-phase guardian that frees the lock if we vanish."""
        self._require(self.conn.run(prepare(self.layout, self.lock_id, self.lease), timeout=30), "arming the guardian")
        self._require(self._run(launch(self.layout, self.lock_id, None), stdin=records), "starting the guardian")
        self.last_renewal = time.monotonic()

    def arm_switch(self, plan: SwitchPlan, records: bytes) -> None:
        """Before the first change: a guardian that can put the recorded image back."""
        self.renew()
        self._require(self._run(launch(self.layout, self.lock_id, plan), stdin=records), "starting the guardian")

    def renew(self) -> None:
        self._require(self._run(renew(self.dir, self.lease), timeout=self.lease), "renewing the guardian")
        self.last_renewal = time.monotonic()

    def phase(self, name: str) -> None:
        self._require(self._run(set_phase(self.dir, name)), f"telling the guardian '{name}'")

    @contextmanager
    def held(self) -> Iterator[Callable[[], None]]:
        """While held, the driver writes its record with its usual commands; call the yielded
        function once it is written (the phase then says `recorded`)."""
        self._require(self._run(hold(self.dir)), "holding the guardian")
        written = [False]
        try:
            yield lambda: written.__setitem__(0, True)
        finally:
            self._require(self._run(unhold(self.dir, written[0])), "giving the guardian back")

    def disarm(self) -> None:
        """For good: the driver ended the deploy on this host (and freed the lock itself)."""
        self._require(self._run(disarm(self.dir)), "disarming the guardian")

    def finish(self) -> bool:
        """Disarm and free the lock; False if another lock holds the host now."""
        result = self._run(finish(self.dir, self.layout, self.lock_id))
        if result.rc == 75:
            return False
        self._require(result, "releasing the deploy lock")
        return True

    def state(self) -> State:
        return State.parse(self.conn.run(read_state(self.dir), timeout=30).stdout)

    def wait_outcome(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str | None:
        """After it fired: what the guardian ended with (restored/kept/failed/untouched), or None."""
        end = time.monotonic() + timeout
        while True:
            state = self.state()
            if state.result:
                return state.result
            if (not state.alive and state.token != "armed") or time.monotonic() >= end:
                return None
            sleep(1.0)

    def fenced(self, via: Remote | None = None) -> Remote:
        """`via` (default: the guard's own connection), with every command fenced by this guardian.

        A recording transport stays on top: -v and the plan show the command itself, the fence
        (a 3-line wrapper, FENCE_SCRIPT) is applied underneath.
        """
        from ghdeploy.transports.recording import RecordingRemote

        via = via or self.conn
        if isinstance(via, RecordingRemote):
            outer = RecordingRemote(FencedRemote(self, via.backend), on_record=via.on_record)
            outer.recorded = via.recorded
            return outer
        return FencedRemote(self, via)


class FencedRemote:
    """A transport whose every command is fenced: none starts once the guardian fired."""

    def __init__(self, guard: Guard, via: Remote) -> None:
        self.guard = guard
        self.via = via
        self.host = via.host

    def run(self, argv: Argv, *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        result = self.via.run(fence(self.guard.dir, argv), stdin=stdin, timeout=timeout)
        if result.rc == TOOK_OVER:
            self.guard.fired = True
            raise GuardianTookOver(
                f"{self.host.label}: the host's guardian took over (ghdeploy was out of touch for "
                f"{self.guard.lease}s); the host heals itself"
            )
        return result

    def check(self, argv: Argv, *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        from ghdeploy.errors import RemoteCommandError

        result = self.run(argv, stdin=stdin, timeout=timeout)
        if result.rc != 0:
            raise RemoteCommandError(self.host.label, " ".join(argv[:3]), result.rc, result.stderr)
        return result

    def http_client(self, timeout: float = 5.0) -> Client:
        return self.via.http_client(timeout)

    def __getattr__(self, name: str) -> Any:
        # Anything else the transport offers (alive, reconnect, close) is the underlying one's.
        return getattr(self.via, name)


class Heartbeat:
    """Renews every guard every RENEW_EVERY s, each host on its own thread (a dead link must not
    delay the others' renewals)."""

    def __init__(self, guards: list[Guard], every: float = RENEW_EVERY) -> None:
        self.guards = guards
        self.every = every
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(g,), daemon=True) for g in guards]

    def _loop(self, guard: Guard) -> None:
        while not self._stop.wait(self.every):
            if guard.fired:
                return
            try:
                guard.renew()
            except GuardianTookOver:
                return
            except GhdeployError as exc:
                guard.error = str(exc)  # the host thread notices the lost link itself

    def __enter__(self) -> Heartbeat:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
