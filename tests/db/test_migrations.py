"""Alembic migrations build exactly the schema the code describes, up and down, on both DBs."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sealpost.db import migrate
from sealpost.db.engine import make_test_engine
from sealpost.schema import metadata


def test_upgrade_matches_the_tables_and_downgrade_undoes_it(database_url: str) -> None:
    engine = make_test_engine(database_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # idempotent: every start runs it
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert {"evidence_records", "tree_heads", "ledger_nodes", "tenants"} <= set(
        inspect(engine).get_table_names()
    )
    _downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def _downgrade(engine: object) -> None:
    from alembic import command

    config = migrate.alembic_config()
    with engine.begin() as conn:  # type: ignore[attr-defined]
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
