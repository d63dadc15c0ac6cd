"""A partial index on the communications waiting for their certificate.

``/metrics`` reads the certificate backlog (how many, and since when the oldest waits) at
every scrape, and the certificate loop picks its next candidates by ``updated_at``: both
read only the rows with ``certificate_due = 1``, a few among millions once certificates are
issued, so the index holds those rows only.

On PostgreSQL the index is built ``CONCURRENTLY``, outside the migration's transaction: a
plain ``CREATE INDEX`` would block every write to ``communications`` (SMTP acceptance,
deliveries, certificates) for as long as it reads the table.  A build that failed leaves an
invalid index behind; the next upgrade drops it and builds it again.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


INDEX = "ix_communications_certificate_due"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            invalid = (
                op.get_bind()
                .execute(
                    sa.text(
                        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                        " WHERE c.relname = :name AND NOT i.indisvalid"
                        " AND c.relnamespace = current_schema()::regnamespace"
                    ),
                    {"name": INDEX},
                )
                .first()
            )
            if invalid:
                op.execute(sa.text(f"DROP INDEX CONCURRENTLY {INDEX}"))
            op.execute(
                sa.text(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON communications"
                    " (updated_at) WHERE certificate_due = 1"
                )
            )
        return
    due = sa.text("certificate_due = 1")
    op.create_index(
        INDEX,
        "communications",
        ["updated_at"],
        sqlite_where=due,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="communications")
