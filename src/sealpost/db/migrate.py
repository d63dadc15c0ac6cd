"""Run Alembic migrations from code: ``sealpost serve`` upgrades the schema at start-up.

Every process migrates at start, so several may do it at once (a rolling start, compose
scaling, ``sealpost-migrate`` racing a role).  On PostgreSQL the upgrade runs under a session
advisory lock keyed on the schema: the others wait, then find the schema at head and do
nothing.  SQLite needs no lock: its single writer serialises them.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"

LOCK_NAMESPACE = 0x5E41_0001
"""First key of the advisory lock (``pg_advisory_lock(int, int)``); the second is the
schema's ``hashtext``, so migrations of other schemas of the same database do not wait."""

LOCK_POLL_SECONDS = 0.25


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on every start, from many processes.

    The connection is handed to Alembic outside any transaction: ``env.py`` opens one, and a
    revision that must run outside one (``CREATE INDEX CONCURRENTLY``) commits it in its
    ``autocommit_block``."""
    config = alembic_config()
    with engine.connect() as conn:
        locked = _lock(conn)
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
        finally:
            if locked:
                _unlock(conn)


def _lock(conn: Connection) -> bool:
    """Wait for the schema's migration lock (PostgreSQL); held by the session, across the
    commits of the upgrade, until :func:`_unlock` or the connection closes.

    It polls ``pg_try_advisory_lock`` in short transactions rather than blocking in
    ``pg_advisory_lock``: a session blocked there is inside a transaction, and ``CREATE INDEX
    CONCURRENTLY`` in the holder's upgrade waits for every older transaction to end, so the
    two would deadlock."""
    if conn.dialect.name != "postgresql":
        return False
    while True:
        locked = conn.execute(
            text("SELECT pg_try_advisory_lock(:namespace, hashtext(current_schema()))"),
            {"namespace": LOCK_NAMESPACE},
        ).scalar_one()
        conn.commit()
        if locked:
            return True
        time.sleep(LOCK_POLL_SECONDS)


def _unlock(conn: Connection) -> None:
    if conn.in_transaction():
        conn.rollback()  # a failed upgrade leaves its transaction open: unlock outside it
    conn.execute(
        text("SELECT pg_advisory_unlock(:namespace, hashtext(current_schema()))"),
        {"namespace": LOCK_NAMESPACE},
    )
    conn.commit()
