"""The guardian's POSIX sh, as constants: every value reaches a script as a positional parameter.

GUARDIAN_SCRIPT is the watcher that fires (see the package docstring for what it does by phase);
the others are the driver's small steps on the host (prepare, launch, renew, phase, fence, hold,
unhold, disarm, finish, state), each built into an argv by commands.py.
"""

from __future__ import annotations

from ghdeploy import remote_commands as rc

Argv = list[str]

# Without a renewal for LEASE seconds the host heals itself. The driver renews every RENEW_EVERY
# seconds, and notices a dead link within 15 s (ssh.py), so a live driver is never overtaken.
LEASE = 15
RENEW_EVERY = 5
# Exit status of a guarded command (and of renew/phase/record/finish) once the guardian fired.
TOOK_OVER = 86
PHASES = ("locked", "changing", "confirmed", "recorded")

_GUARDIAN_TEMPLATE = r"""
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
# Targeted workers a replacement had renamed to NAME.ghdeploy-backup, back under their names (each
# started if its replacement ran): remote_commands.restore_all_backups, in a subshell.
restore_backups() (
@@RESTORE_BACKUPS@@
)
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
      if [ "$good" = restored ]; then log "putting back any targeted worker a replacement renamed"; restore_backups; fi
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

# One definition of putting the backups back: the laptop's own (remote_commands) is a
# self-contained `sh -c` script with no value from us, so the guardian runs the very same text.
GUARDIAN_SCRIPT = _GUARDIAN_TEMPLATE.replace("@@RESTORE_BACKUPS@@", rc.restore_all_backups()[2])

# Starts a guardian instance detached from the session; prints its pid once it runs. The new
# instance writes its pid into $G/pid, and an older instance (the lock-phase one) sees that and
# retires: the hand-over never leaves the host unwatched. stdin holds the records file.
LAUNCH_SCRIPT = r"""
g=$1; s=$2; lease=$3; phase=$4; shift 4
umask 077; mkdir -p "$g" || exit 1
if [ -n "$lease" ]; then
  d=$(( $(date +%s) + lease )) || exit 1
  echo "$d" > "$g/deadline.tmp" && mv -f "$g/deadline.tmp" "$g/deadline" || exit 1
  [ -f "$g/armed" ] || [ -f "$g/held" ] || exit 86
fi
cat > "$g/records.tmp" && mv -f "$g/records.tmp" "$g/records" || exit 1
old=$(cat "$g/pid" 2>/dev/null)
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$s" ghdeploy-guardian "$g" "$@" </dev/null >>"$g/log" 2>&1 &
else
  nohup sh -c "$s" ghdeploy-guardian "$g" "$@" </dev/null >>"$g/log" 2>&1 &
fi
i=0
while [ $i -lt 500 ]; do
  p=$(cat "$g/pid" 2>/dev/null)
  if [ -n "$p" ] && [ "$p" != "$old" ]; then
    if [ -n "$phase" ]; then
      echo "$phase" > "$g/phase.tmp" && mv -f "$g/phase.tmp" "$g/phase" || exit 1
      [ -f "$g/armed" ] || exit 86
    fi
    echo "$p"; exit 0
  fi
  sleep 0.01; i=$((i + 1))
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
