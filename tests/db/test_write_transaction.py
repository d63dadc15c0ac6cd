"""Regression: a connection the database drops mid-transaction surfaces as the database's error.

It surfaced as ``PendingRollbackError`` (SQLAlchemy's "rollback first"), raised by our own
clean-up in ``write_transaction``; the API maps database errors to ``503`` with Retry-After
and SMTP to ``451``, but that one became a ``500`` during a PostgreSQL restart
(tests/communications/test_database_restart_under_load.py met it).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from sealpost.db.engine import make_engine, write_transaction


@pytest.mark.postgres
def test_a_connection_dropped_mid_transaction_raises_the_database_error(
    postgres_schema_url: str,
) -> None:
    engine = make_engine(postgres_schema_url)
    admin = make_engine(postgres_schema_url)
    try:
        with pytest.raises(OperationalError), write_transaction(engine) as conn:  # noqa: PT012
            backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:  # as a restart or a failover does
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            conn.execute(text("SELECT 1"))
        with write_transaction(engine) as conn:  # and the pool goes on with a fresh one
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
        admin.dispose()
