"""The receiver's HTTP routes (Starlette, ASGI).

POST /api/v1/webhooks/ghosthands/deploy   413 > 64 KiB, 401 bad signature (checked on the raw
                                          bytes before parsing, nothing stored), 400 unreadable,
                                          422 not for us (reason), 200 duplicate, 202 queued,
                                          503 the database does not answer (nothing recorded)
GET  /api/v1/deploys/{id}                 Bearer DEPLOY_API_TOKEN; 404 unknown
GET  /api/v1/deploys?limit=N              Bearer DEPLOY_API_TOKEN; newest first
GET  /healthz                             no auth; 503 when the database does not answer
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ghdeploy import __version__
from ghdeploy.server import payload
from ghdeploy.server.auth import SIGNATURE_HEADER, bearer_ok, body_digest, signature_ok
from ghdeploy.server.queue import DeployQueue
from ghdeploy.server.store import Store

log = logging.getLogger("ghdeploy.serve")

WEBHOOK_PATH = "/api/v1/webhooks/ghosthands/deploy"
MAX_LIMIT = 1000


@dataclass
class Receiver:
    store: Store
    queue: DeployQueue
    secret: str
    token: str
    expect: payload.Expectations
    now: Callable[[], datetime] = payload.now_utc
    shutdown_timeout: float | None = None  # None: wait as long as the running deploy needs


def _error(status: int, reason: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers or None)


async def _read_body(request: Request) -> bytes | None:
    """The raw body, or None when it is over MAX_BODY (refused before all of it is read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        with contextlib.suppress(ValueError):
            if int(declared) > payload.MAX_BODY:
                return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > payload.MAX_BODY:
            return None
    return bytes(body)


def create_app(receiver: Receiver) -> Starlette:  # noqa: C901 (the routes are closures defined here)
    async def webhook(request: Request) -> JSONResponse:
        body = await _read_body(request)
        if body is None:
            return _error(413, f"body over {payload.MAX_BODY} bytes")
        if not signature_ok(receiver.secret, body, request.headers.get(SIGNATURE_HEADER)):
            log.warning("webhook refused: 401 signature missing or wrong")
            return _error(401, f"{SIGNATURE_HEADER} missing or wrong")
        try:
            parsed = payload.parse(body)
            payload.check(
                parsed,
                receiver.expect,
                receiver.now(),
                request.headers.get("x-gh-event"),
                request.headers.get("x-gh-environment"),
            )
        except payload.Refusal as refusal:
            log.warning("webhook refused: %s %s", refusal.status, refusal.reason)
            return _error(refusal.status, refusal.reason)
        try:
            deploy_id, created = await run_in_threadpool(receiver.store.add, parsed, body_digest(body))
        except SQLAlchemyError as exc:
            # CI may retry: nothing was recorded, so nothing will be deployed twice
            log.error("webhook for %s: cannot record it: %s", parsed.image_tag, type(exc).__name__)
            return _error(503, "the receiver cannot reach its database; try again")
        if not created:
            log.info("webhook for %s: duplicate of deploy #%s", parsed.image_tag, deploy_id)
            return JSONResponse({"id": deploy_id, "status": "duplicate"}, status_code=200)
        log.info("webhook for %s (%s): deploy #%s queued", parsed.image_tag, parsed.commit_sha[:12], deploy_id)
        receiver.queue.wake()
        return JSONResponse({"id": deploy_id, "status": "queued"}, status_code=202)

    def authorized(request: Request) -> bool:
        return bearer_ok(receiver.token, request.headers.get("authorization"))

    unauthorized = {"WWW-Authenticate": "Bearer"}

    async def one(request: Request) -> JSONResponse:
        if not authorized(request):
            return _error(401, "Authorization: Bearer <DEPLOY_API_TOKEN> missing or wrong", **unauthorized)
        record = await run_in_threadpool(receiver.store.get, int(request.path_params["deploy_id"]))
        if record is None:
            return _error(404, f"no deploy #{request.path_params['deploy_id']}")
        return JSONResponse(record)

    async def many(request: Request) -> JSONResponse:
        if not authorized(request):
            return _error(401, "Authorization: Bearer <DEPLOY_API_TOKEN> missing or wrong", **unauthorized)
        text = request.query_params.get("limit", "20")
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        records = await run_in_threadpool(receiver.store.recent, int(text))
        return JSONResponse({"deploys": records})

    async def healthz(request: Request) -> JSONResponse:
        ok = await run_in_threadpool(receiver.store.ping)
        body: dict[str, Any] = {"ok": ok, "ghdeploy": __version__, "running": receiver.queue.running_id}
        return JSONResponse(body, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(receiver.queue.recover)
        receiver.queue.start()
        receiver.queue.wake()  # deploys queued while no receiver ran
        try:
            yield
        finally:
            running = receiver.queue.running_id
            if running is not None:
                log.warning("stopping: deploy #%s stops at its next safe point (a host mid-switch rolls back)", running)
            await run_in_threadpool(receiver.queue.stop, receiver.shutdown_timeout)

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/api/v1/deploys/{deploy_id:int}", one, methods=["GET"]),
            Route("/api/v1/deploys", many, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
