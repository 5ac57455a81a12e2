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
  `docker compose up -d`, recreates the worker (a worker asked to drain never takes work
  again), gives each targeted worker a replacement had renamed (NAME.ghdeploy-backup) its name
  back, started if its replacement ran, and starts the targeted workers that ran before and are
  stopped; `confirmed` (the new image had passed its health check) keeps the new image if the
  api still runs it healthy (backups are then left for the next run's recover_backups), else
  puts back the recorded one;
- waits for the api to be healthy (see HEALTH below), appends the record the driver prepared
  (result `abandoned`, with the reason), removes pending.json once the host is healthy again,
  and frees the lock only if it is still this deploy's lock.

HEALTH on the host, with no curl promised: the api container must run the expected image and be
`running`; then `curl` or `wget` on the host, when there is one, must get 200 from /health; without
either, the compose healthcheck (which the GhostHands compose file defines on /health) must say
`healthy`; with neither a tool nor a healthcheck, the container must stay running, never
restarted, for 10 s. The worker must be running on the same image.

Every script is a constant; every value reaches it as a positional parameter.

scripts.py: the POSIX sh; commands.py: the argv and the prepared records; driver.py: the
driver's side (Guard, FencedRemote, Heartbeat).
"""

from ghdeploy.engine.guardian.commands import (
    OUTCOMES,
    RECORD_LINES,
    SwitchPlan,
    disarm,
    fence,
    finish,
    guardian_dir,
    guardian_root,
    hold,
    launch,
    prepare,
    read_state,
    record_lines,
    renew,
    set_phase,
    unhold,
)
from ghdeploy.engine.guardian.driver import FencedRemote, Guard, GuardianTookOver, Heartbeat, State
from ghdeploy.engine.guardian.scripts import (
    FINISH_SCRIPT,
    GUARDIAN_SCRIPT,
    LAUNCH_SCRIPT,
    LEASE,
    PHASES,
    RENEW_EVERY,
    TOOK_OVER,
)

__all__ = [
    "FINISH_SCRIPT",
    "GUARDIAN_SCRIPT",
    "LAUNCH_SCRIPT",
    "LEASE",
    "OUTCOMES",
    "PHASES",
    "RECORD_LINES",
    "RENEW_EVERY",
    "TOOK_OVER",
    "FencedRemote",
    "Guard",
    "GuardianTookOver",
    "Heartbeat",
    "State",
    "SwitchPlan",
    "disarm",
    "fence",
    "finish",
    "guardian_dir",
    "guardian_root",
    "hold",
    "launch",
    "prepare",
    "read_state",
    "record_lines",
    "renew",
    "set_phase",
    "unhold",
]
