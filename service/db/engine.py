"""Engine, sessions and migrations.

One transaction per unit of work: ``with db.transaction() as session:`` commits on success
and rolls back and re-raises on error; nothing else commits. On SQLite every such
transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy
timeout instead of failing half way; on PostgreSQL row locks do that job.

Within one process, SQLite writers also take turns on a lock of our own before
``BEGIN IMMEDIATE``: a waiter is woken the moment the writer before it commits, where
SQLite's busy handler would poll with sleeps of up to 100 ms (measured: that polling
was most of the latency under 50 concurrent clients). The busy timeout still covers
other processes (the worker, the CLI).

``with db.snapshot() as session:`` is for reads that write nothing (audit exports
streamed to a client, health checks): on SQLite a deferred transaction, which in WAL mode
reads a consistent snapshot without taking the write lock, so a slow reader never
holds up writers; on PostgreSQL a read-only REPEATABLE READ transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["MIGRATIONS_DIR", "Database", "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_SNAPSHOT = "pprl_snapshot"
WRITER_WAIT_SECONDS = 30.0  # as long as SQLite's own busy timeout


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the driver, issue BEGIN (see the "begin" hook below)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        snapshot = conn.get_execution_options().get(_SNAPSHOT, False)
        conn.exec_driver_sql("BEGIN" if snapshot else "BEGIN IMMEDIATE")


class Database:
    """An engine plus a session factory for one database URL.

    SQL parameters are never put into error messages (``hide_parameters``): a database
    error that reaches a log or a traceback names the statement, not the values.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # writers take turns on SQLite's one write lock, but readers run side by side:
            # keep their connections (overflow ones are closed on return, and a new one
            # pays its PRAGMAs: under 50 clients that churn was a tenth of the CPU)
            pool_size, overflow = 15, 5
            self.engine = create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=pool_size,
                max_overflow=overflow,
                hide_parameters=True,
            )
            _sqlite_setup(self.engine)
        else:
            pool_size, overflow = 10, 20
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=overflow,
                pool_pre_ping=True,
                hide_parameters=True,
            )
        self.pool_capacity = pool_size + overflow
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # a plain Lock, not an RLock: a web request's transaction is opened, used and
        # committed on different threadpool threads
        self._writer = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._writer_turn(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if not self.is_sqlite:
            yield  # PostgreSQL writers run side by side; row locks order them
            return
        if not self._writer.acquire(timeout=WRITER_WAIT_SECONDS):
            raise TimeoutError(f"the database stayed busy for {WRITER_WAIT_SECONDS:.0f} s")
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction over a consistent snapshot that never takes a write lock."""
        options: dict[str, Any] = {_SNAPSHOT: True}
        if not self.is_sqlite:
            options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with (
            self.engine.connect().execution_options(**options) as conn,
            Session(bind=conn, expire_on_commit=False) as session,
        ):
            try:
                yield session
            finally:
                conn.rollback()  # it wrote nothing; end the snapshot either way

    def dispose(self) -> None:
        self.engine.dispose()


def migrate(url: str, revision: str = "heads") -> None:
    """Bring the schema to ``revision`` with Alembic (the only way the schema is built)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)
