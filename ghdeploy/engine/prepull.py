"""Pull the new image on every host at once, before the first host is drained.

The pull dominates a deploy (the real image carries Chromium, well over 1 GB). Pulled host by
host inside the rolling switch, N hosts pay N pulls in series while each host's worker waits.
Pulled up front and in parallel, the fleet pays about one pull, and the rolling switch that
follows finds the image present on every host (run_host's own pull step then only checks it).

A host whose pull fails stops the deploy here, before any host was drained or switched: the
hosts keep running what they ran, and the image pulled on the others is only an unused image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ghdeploy.engine import host as engine_host
from ghdeploy.engine.fleet import parallel, rolling
from ghdeploy.engine.host import Operation, unlabel
from ghdeploy.errors import GhdeployError
from ghdeploy.results import Action, FleetResult, HostResult, Result, Target
from ghdeploy.transports.base import Remote

# Hosts pulling at once unless PULL_PARALLEL says otherwise. Each pull streams layers from the registry (ECR serves every host from
# S3, so the registry is rarely the limit); the bound keeps a 1,000-host fleet from opening
# 1,000 pulls against one NAT gateway or registry mirror, and bounds our own threads.
PULL_LIMIT = 16


def prepull(
    op: Operation,
    conns: Mapping[str, Remote],
    order: list[str],
    target_for: Callable[[str], Target],
    action: str = "deploy",
    limit: int | None = None,
) -> FleetResult | None:
    """Make each host's target present (pull when missing), `limit` (default PULL_LIMIT) hosts at once.

    Returns None when every host has its image; otherwise the fleet's result as it stands: the
    hosts whose pull failed are "failed", every host is untouched otherwise. Interrupted: every
    host untouched and the result marked interrupted.
    """
    start = op.clock.now()
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def one(label: str) -> None:
        began = op.clock.now()
        if op.cancel.is_set():
            return
        try:
            target = target_for(label)
            op.present[label] = (target, engine_host.ensure_image(op, conns[label], target))
            op.reporter.step(label, "image ready, waiting for the switch")
        except GhdeployError as exc:
            errors[label] = unlabel(str(exc), label)
            op.reporter.warn(f"{label}: pull failed: {errors[label]} (nothing on the host was changed)")
        finally:
            seconds[label] = op.clock.now() - began

    parallel(order, one, limit=limit or PULL_LIMIT)
    if not errors and not op.cancel.is_set():
        return None
    results = []
    for label in order:
        result = HostResult(host=label, action=Action(action), target=target_for(label))
        result.phases["pull"] = seconds.get(label, 0.0)
        if label in errors:
            result.result = Result.FAILED
            result.error = f"pull failed: {errors[label]}"
        elif errors:
            result.notes.append("not switched: the image could not be pulled on " + ", ".join(sorted(errors)))
        else:
            result.error = "interrupted"
        results.append(result)
    return FleetResult(
        action=Action(action),
        target=results[0].target if results else None,
        hosts=results,
        interrupted=op.cancel.is_set(),
        duration=op.clock.now() - start,
    )


def pull_then_roll(
    op: Operation,
    conns: Mapping[str, Remote],
    order: list[str],
    target_for: Callable[[str], Target],
    batch: int,
    action: str = "deploy",
    pull_limit: int | None = None,
) -> tuple[FleetResult, float]:
    """The fleet deploy: every host pulls at once, then the rolling switch (`batch` at a time).

    Returns the fleet's result and the seconds the pull phase took. No host is drained or
    switched unless every host has its image.
    """
    start = op.clock.now()
    stopped = prepull(op, conns, order, target_for, action, pull_limit)
    pulled = op.clock.now() - start
    if stopped is not None:
        return stopped, pulled
    return rolling(op, conns, order, target_for, batch, action), pulled
