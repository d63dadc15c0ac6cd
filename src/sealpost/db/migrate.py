"""Run Alembic migrations from code: ``sealpost serve`` upgrades the schema at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


MIGRATION_LOCK = 0x5EA1
"""The first key of the advisory lock migrations take on PostgreSQL (the second: the schema)."""


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on every start, from many processes.

    Every ``serve`` migrates at start, so replicas starting together would migrate the same
    schema at once (``relation ... already exists``, or a data step applied twice).  On
    PostgreSQL the whole upgrade runs in one transaction that first takes a transaction-level
    advisory lock keyed on the schema: one process migrates, the others wait, then find the
    schema at head and do nothing; the lock goes with the commit or the rollback.  SQLite's
    write lock serialises writers already."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
                {"key": MIGRATION_LOCK},
            )
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
