"""`ghdeploy serve`: the webhook receiver (Starlette app under uvicorn).

Needs the `server` extra; nothing here imports it at module level, so `ghdeploy --help` and the
other commands never pay for it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from ghdeploy.config import Config
from ghdeploy.errors import ConfigError, PreflightError

DEFAULT_LISTEN = "127.0.0.1:8080"
EXTRA_HINT = "pip install 'ghdeploy[server]'"


def require_extra(database_url: str | None = None) -> None:
    """Exit 2 with the install hint when the server libraries are missing."""
    modules = ["starlette", "uvicorn", "sqlalchemy"]
    if database_url and database_url.startswith(("postgres:", "postgresql:", "postgresql+psycopg:")):
        modules.append("psycopg")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"`ghdeploy serve` needs the server extra ({', '.join(missing)} not installed)", EXTRA_HINT)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT for IPv6)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT", f"e.g. --listen {DEFAULT_LISTEN}")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so a taken port is a clear error (exit 2), not a log line."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PreflightError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pick another --listen"
        ) from None
    sock.set_inheritable(True)
    return sock


def setup_logging(verbose: int, quiet: bool, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger("ghdeploy.serve")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def serve(
    config: Config,
    cwd: Path,
    listen: str,
    *,
    verbose: int = 0,
    quiet: bool = False,
    environ: Mapping[str, str] | None = None,
    log_stream: TextIO | None = None,
) -> int:
    """Run the receiver until SIGTERM/SIGINT. Its keys come from `environ` (default: this process's)
    and the env file; its log lines go to `log_stream` (default: stderr)."""
    from ghdeploy.server.settings import server_settings

    settings = server_settings(config, environ, cwd=cwd)
    require_extra(settings.database_url)
    host, port = parse_listen(listen)

    import uvicorn

    from ghdeploy.server import payload
    from ghdeploy.server.app import Receiver, create_app
    from ghdeploy.server.callback import CallbackSender
    from ghdeploy.server.deployer import fleet_deploy, operator_name
    from ghdeploy.server.queue import DeployQueue
    from ghdeploy.server.store import Store, StoreError, safe_url

    setup_logging(verbose, quiet, log_stream)
    log = logging.getLogger("ghdeploy.serve")
    store = Store(settings.database_url, config.text("GH_ENVIRONMENT"), f"{socket.gethostname()}:{os.getpid()}")
    try:
        store.create()
    except StoreError as exc:
        raise PreflightError(str(exc), "check DATABASE_URL and that the database server is up") from None
    sock = bind(host, port)
    callbacks = (
        CallbackSender(settings.callback_url, settings.webhook_secret, store.set_callback)
        if settings.callback_url
        else None
    )
    queue = DeployQueue(store, fleet_deploy(config, cwd), callbacks.submit if callbacks else None)
    receiver = Receiver(
        store=store,
        queue=queue,
        secret=settings.webhook_secret,
        token=settings.api_token,
        expect=payload.Expectations(
            registry=config.registry,
            repository=config.repository,
            environment=config.text("GH_ENVIRONMENT"),
            max_age=settings.max_age,
        ),
    )
    log.info(
        "ghdeploy serve on http://%s:%s for %s (%s), database %s, operator %s",
        host,
        port,
        config.text("GH_ENVIRONMENT"),
        config.image_name,
        safe_url(settings.database_url),
        operator_name(),
    )
    server = graceful_server(log)(
        uvicorn.Config(
            create_app(receiver),
            log_level="warning" if quiet else "info",
            access_log=not quiet,
            lifespan="on",
            proxy_headers=True,
            server_header=False,
            timeout_graceful_shutdown=30,
        )
    )
    try:
        server.run(sockets=[sock])
        if server.stop_signal is not None:
            left = "deploys still queued stay queued in the database: the next `ghdeploy serve` on it runs the newest"
            try:
                queued = store.has_queued()
            except Exception:  # the report is a courtesy; the shutdown itself went well
                queued = False
            log.info(
                "stopped on %s: no longer taking webhooks, the running deploy (if any) stopped at a safe point "
                "and was recorded; %s; exiting 0",
                signal.Signals(server.stop_signal).name,
                left if queued else "no deploy is queued",
            )
    finally:
        if callbacks is not None:
            callbacks.close()
        store.close()
        sock.close()
    return 0


def graceful_server(log: logging.Logger) -> type:
    """uvicorn.Server whose SIGTERM/SIGINT is a graceful stop that exits 0.

    uvicorn (>= 0.29) re-raises the signal it caught once it has shut down, so a receiver that
    stopped cleanly (the lifespan let the running deploy reach a safe point and recorded it) died
    of that signal: exit 143, which a supervisor reports as a crash. Here the handlers are the
    same, put back the same way, and the signal is not raised again.
    """
    import threading

    import uvicorn

    class GracefulServer(uvicorn.Server):
        stop_signal: int | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.stop_signal is None:
                log.info(
                    "%s received: shutting down gracefully (no new webhooks; a running deploy stops at its "
                    "next safe point, queued ones stay queued)",
                    signal.Signals(sig).name,
                )
                self.stop_signal = sig
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return GracefulServer
