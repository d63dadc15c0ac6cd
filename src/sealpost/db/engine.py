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
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 20, **kwargs: Any
) -> Engine:
    """An engine with Sealpost's connection settings for the URL's dialect; ``pool_size``
    connections are kept open (PostgreSQL), as many more may be opened for a burst."""
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
    if kwargs.get("poolclass") is None:
        # connections are kept for as many requests and loops as run at once: with the default
        # 5 (+10 overflow) a process serving 20 concurrent requests opened and closed a
        # PostgreSQL connection (a fork on the server) for most of them
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", pool_size)
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
        release_request_connections()  # no hold-and-wait on the pool
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


class RequestConnections:
    """The one pooled connection per engine that the reads of one API request share.

    A request used to check out a connection for each repository call (a GET of a
    communication: five, each with its pre-ping and its reset rollback); here the first read
    checks one out and the others reuse it.  It is in autocommit (PostgreSQL): every
    statement sees what is committed when it runs, as with a connection per read, and there is
    no BEGIN or ROLLBACK round trip.  Writes never use it (``write_transaction`` opens its
    own).  Used by one thread at a time: a request's dependencies and endpoint run one after
    the other."""

    def __init__(self) -> None:
        self._open: dict[Engine, Connection] = {}

    def connection(self, engine: Engine) -> Connection:
        conn = self._open.get(engine)
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self._open[engine] = conn
        return conn

    @property
    def used(self) -> bool:
        return bool(self._open)

    def close(self) -> None:
        """Return the connections to their pools (at the end of the request)."""
        while self._open:
            _, conn = self._open.popitem()
            conn.close()


_REQUEST_CONNECTIONS: ContextVar[RequestConnections | None] = ContextVar(
    "sealpost_request_connections", default=None
)


@contextmanager
def request_scope() -> Iterator[RequestConnections]:
    """Reads within share one connection per engine until the block ends (an API request)."""
    scope = RequestConnections()
    token = _REQUEST_CONNECTIONS.set(scope)
    try:
        yield scope
    finally:
        _REQUEST_CONNECTIONS.reset(token)


def release_request_connections() -> None:
    """Give the request's shared read connections back to their pools now; a later read of
    the same request checks out another.  Called before a request waits for a second
    connection (a write transaction, the submission writer) and before its body is sent or
    received at a client's pace: a request never holds one connection while waiting for
    another (forty such requests would empty the pool and wait on each other) nor while a slow
    client uploads or downloads."""
    scope = _REQUEST_CONNECTIONS.get()
    if scope is not None:
        scope.close()


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads: the request's shared one inside :func:`request_scope` on
    PostgreSQL, else one of its own (SQLite's are in-process and cheap, and a read
    transaction held across the request would keep an old snapshot after its own writes)."""
    scope = _REQUEST_CONNECTIONS.get()
    if scope is None or is_sqlite(engine):
        with engine.connect() as conn:
            yield conn
        return
    yield scope.connection(engine)
