"""Engines and transactions for SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with a busy timeout so readers never block the writer, and with the
pysqlite driver's own transaction handling switched off (SQLAlchemy's documented recipe) so
that ``BEGIN IMMEDIATE`` can be asked for where a transaction reads then writes.

SQLite has one writer at a time, and its busy handler makes a waiting writer *sleep* (1, 2,
5 ... up to 100 ms between tries), so under load a writer can starve behind others that keep
committing.  Writers of one process therefore queue on a lock of their own per database file
(``write_transaction``): the next one starts the moment the previous commits.  Only writers
of *other* processes still meet the busy handler.  (Re-entrant: a write transaction opened
inside another on the same thread fails on SQLite's busy timeout instead of hanging.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """An engine with Sealpost's connection settings for the URL's dialect."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_test_engine(url: str) -> Engine:
    """An engine without pooling, for short-lived tools and tests."""
    return make_engine(url, poolclass=NullPool)


_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> threading.RLock | None:
    """The in-process writer lock of a SQLite database file (None for other databases)."""
    if not is_sqlite(engine):
        return None
    key = str(engine.url.database)
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, threading.RLock())


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes: IMMEDIATE on SQLite, behind the process's writer lock (held
    until the commit is done); a plain transaction elsewhere.  Callbacks registered with
    :func:`after_commit` run once it has committed (never after a rollback)."""
    lock = _writer_lock(engine)
    callbacks: list[Callable[[], None]] = []
    if lock is None:
        with engine.begin() as conn:
            conn.info[_AFTER_COMMIT] = callbacks
            try:
                yield conn
            finally:
                _forget_callbacks(conn)
    else:
        with (
            lock,
            engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
            conn.begin(),
        ):
            conn.info[_AFTER_COMMIT] = callbacks
            try:
                yield conn
            finally:
                _forget_callbacks(conn)
    for callback in callbacks:
        callback()


_AFTER_COMMIT = "sealpost_after_commit"


def _forget_callbacks(conn: Connection) -> None:
    """Take the callbacks off the pooled connection's ``info`` (it outlives the checkout).

    Not on a connection the database dropped (a restart, a failover): reading ``info`` there
    raises ``PendingRollbackError``, which would replace the database's own error (a 503 with
    Retry-After at the API, a 451 in SMTP) by an unexpected one (a 500); and the pool clears
    ``info`` when it reconnects anyway."""
    if not conn.invalidated:
        conn.info.pop(_AFTER_COMMIT, None)


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the ``write_transaction`` of ``conn`` has committed (at once when
    ``conn`` is not one: its caller commits it, and nothing watches that commit)."""
    callbacks = conn.info.get(_AFTER_COMMIT)
    if callbacks is None:
        callback()
    elif callback not in callbacks:
        callbacks.append(callback)
