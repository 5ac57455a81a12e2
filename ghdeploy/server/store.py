"""The receiver's records, in SQLite (one receiver) or PostgreSQL (several), through SQLAlchemy Core.

One table, `ghdeploy_deploys`, one row per accepted webhook. Who may run a deploy is decided by
one lock the database (or the OS) keeps for us and frees when its holder dies: a PostgreSQL
session advisory lock, or for SQLite a `flock` on a file beside the database. Whoever holds it
claims the newest queued row and supersedes the older ones in one transaction.

Rows carry `record_version`; readers ignore columns they do not know and tolerate missing ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from ghdeploy.server.payload import DeployRequest, iso, now_utc

RECORD_VERSION = 1
STATUSES = ("queued", "running", "succeeded", "rolled back", "failed", "superseded", "interrupted")
FINAL = frozenset({"succeeded", "rolled back", "failed", "superseded", "interrupted"})

metadata = sa.MetaData()
deploys = sa.Table(
    "ghdeploy_deploys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_version", sa.Integer, nullable=False, default=RECORD_VERSION),
    sa.Column("body_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("environment", sa.String(64), nullable=False, index=True),
    sa.Column("image_tag", sa.String(128), nullable=False),
    sa.Column("commit_sha", sa.Text, nullable=False),
    sa.Column("commit_message", sa.Text, nullable=False),
    sa.Column("run_url", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("started_at", sa.String(32)),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("receiver", sa.Text),  # which `serve` process ran it (host:pid)
    sa.Column("hosts", sa.Text),  # JSON: per-host results, the shape of `deploy --json`
    sa.Column("progress", sa.Text),  # JSON: the current step of each host while it runs
    sa.Column("notes", sa.Text),  # JSON list
    sa.Column("error", sa.Text),
    sa.Column("callback", sa.Text),  # JSON: how the report back went
)


class StoreError(Exception):
    """The database cannot be reached or used."""


def engine_url(url: str) -> str:
    """`postgresql://` (and Heroku-style `postgres://`) mean psycopg 3, the driver the extra installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """The URL for logs: never the password."""
    try:
        return make_url(engine_url(url)).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by create_engine; here say nothing of it
        return "<unparsable DATABASE_URL>"


def _lock_key(environment: str) -> int:
    """A 64-bit advisory lock key per environment: receivers of staging and production may share a database."""
    return int.from_bytes(hashlib.sha256(f"ghdeploy serve {environment}".encode()).digest()[:8], "big", signed=True)


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def to_record(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {
        "id": m["id"],
        "received_at": m["received_at"],
        "environment": m["environment"],
        "image_tag": m["image_tag"],
        "commit_sha": m["commit_sha"],
        "commit_message": m["commit_message"],
        "run_url": m["run_url"],
        "status": m["status"],
        "started_at": m["started_at"],
        "finished_at": m["finished_at"],
        "receiver": m["receiver"],
        "hosts": _loads(m["hosts"], []),
        "progress": _loads(m["progress"], {}),
        "notes": _loads(m["notes"], []),
        "error": m["error"],
        "callback": _loads(m["callback"], None),
        "record_version": m["record_version"],
    }


@dataclass
class Claim:
    record: dict[str, Any]
    superseded: list[int]


class Store:
    def __init__(self, url: str, environment: str, receiver: str) -> None:
        self.url = url
        self.environment = environment
        self.receiver = receiver
        self.dialect = make_url(engine_url(url)).get_backend_name()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.dialect == "sqlite":
            # Request threads and the deploy thread share the file; wait for each other's writes.
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = sa.create_engine(engine_url(url), **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._local_lock = threading.Lock()

    # --- setup ------------------------------------------------------------------------------

    def create(self) -> None:
        """Create the table if missing (receivers starting together on PostgreSQL take turns)."""
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("schema")})
                metadata.create_all(conn, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot use the database {safe_url(self.url)}: {_short(exc)}") from None

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    # --- webhooks ---------------------------------------------------------------------------

    def add(self, request: DeployRequest, body_sha256: str) -> tuple[int, bool]:
        """Record an accepted request as queued: (id, True); or (id of the first delivery, False)."""
        values = {
            "record_version": RECORD_VERSION,
            "body_sha256": body_sha256,
            "received_at": iso(now_utc()),
            "environment": request.environment,
            "image_tag": request.image_tag,
            "commit_sha": request.commit_sha,
            "commit_message": request.commit_message,
            "run_url": request.run_url,
            "status": "queued",
        }
        try:
            with self.engine.begin() as conn:
                new_id = conn.execute(deploys.insert().values(**values).returning(deploys.c.id)).scalar_one()
            return int(new_id), True
        except sa.exc.IntegrityError:
            with self.engine.connect() as conn:
                old = conn.execute(sa.select(deploys.c.id).where(deploys.c.body_sha256 == body_sha256)).scalar_one()
            return int(old), False

    def get(self, deploy_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(deploys).where(deploys.c.id == deploy_id)).first()
        return to_record(row) if row is not None else None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(deploys).order_by(deploys.c.id.desc()).limit(limit)).all()
        return [to_record(r) for r in rows]

    def has_queued(self) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(deploys.c.id)
                .where(deploys.c.status == "queued", deploys.c.environment == self.environment)
                .limit(1)
            ).first()
        return found is not None

    # --- running deploys --------------------------------------------------------------------

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[bool]:
        """Try to become the one receiver that runs deploys; yields whether we are. Never waits.

        The lock dies with its holder (database session or open file), so a receiver killed
        with SIGKILL frees it at once and leaves no home-made lease to expire.
        """
        if self.dialect == "postgresql":
            key = _lock_key(self.environment)
            conn = self.engine.connect()
            got = False
            try:
                got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
                conn.commit()
                yield got
            finally:
                try:
                    if got:
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
                    conn.close()
                except sa.exc.SQLAlchemyError:
                    conn.invalidate()  # closing the session frees the lock anyway
        elif self.dialect == "sqlite" and self._sqlite_path() is not None:
            path = Path(str(self._sqlite_path()) + ".lock")
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        else:
            got = self._local_lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    self._local_lock.release()

    def _sqlite_path(self) -> Path | None:
        database = make_url(self.url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database).resolve()

    def interrupt_running(self, why: str) -> list[int]:
        """Mark deploys left `running` as `interrupted`. Only for the holder of run_lock:
        then nobody else can be running one, so such a row belongs to a receiver that died."""
        with self.engine.begin() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    sa.select(deploys.c.id).where(
                        deploys.c.status == "running", deploys.c.environment == self.environment
                    )
                ).scalars()
            ]
            if ids:
                conn.execute(
                    deploys.update()
                    .where(deploys.c.id.in_(ids), deploys.c.status == "running")
                    .values(status="interrupted", finished_at=iso(now_utc()), error=why)
                )
        return ids

    def claim(self) -> Claim | None:
        """Only for the holder of run_lock: start the newest queued deploy, supersede the older ones."""
        with self.engine.begin() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    sa.select(deploys.c.id)
                    .where(deploys.c.status == "queued", deploys.c.environment == self.environment)
                    .order_by(deploys.c.id.desc())
                ).scalars()
            ]
            if not ids:
                return None
            newest, older = ids[0], ids[1:]
            now = iso(now_utc())
            if older:
                conn.execute(
                    deploys.update()
                    .where(deploys.c.id.in_(older), deploys.c.status == "queued")
                    .values(status="superseded", finished_at=now, error=f"superseded by #{newest}, a newer webhook")
                )
            conn.execute(
                deploys.update()
                .where(deploys.c.id == newest)
                .values(status="running", started_at=now, receiver=self.receiver)
            )
            row = conn.execute(sa.select(deploys).where(deploys.c.id == newest)).one()
        return Claim(record=to_record(row), superseded=older)

    def set_progress(self, deploy_id: int, progress: dict[str, str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                deploys.update()
                .where(deploys.c.id == deploy_id, deploys.c.status == "running")
                .values(progress=json.dumps(progress))
            )

    def finish(
        self, deploy_id: int, status: str, hosts: list[dict[str, Any]], error: str | None, notes: list[str]
    ) -> dict[str, Any] | None:
        assert status in FINAL
        with self.engine.begin() as conn:
            conn.execute(
                deploys.update()
                .where(deploys.c.id == deploy_id)
                .values(
                    status=status,
                    finished_at=iso(now_utc()),
                    hosts=json.dumps(hosts),
                    error=error,
                    notes=json.dumps(notes),
                )
            )
        return self.get(deploy_id)

    def set_callback(self, deploy_id: int, outcome: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(deploys.update().where(deploys.c.id == deploy_id).values(callback=json.dumps(outcome)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the deploy thread's writes
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _short(exc: BaseException) -> str:
    """SQLAlchemy's message without its SQL, parameters and links (they may hold values)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
