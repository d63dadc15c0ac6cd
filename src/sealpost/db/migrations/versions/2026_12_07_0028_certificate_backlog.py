"""A partial index on the communications waiting for their certificate.

``/metrics`` reads the certificate backlog (how many, and since when the oldest waits) at
every scrape, and the certificate loop picks its next candidates by ``updated_at``: both
read only the rows with ``certificate_due = 1``, a few among millions once certificates are
issued, so the index holds those rows only.

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


def upgrade() -> None:
    due = sa.text("certificate_due = 1")
    op.create_index(
        "ix_communications_certificate_due",
        "communications",
        ["updated_at"],
        sqlite_where=due,
        postgresql_where=due,
        if_not_exists=True,  # built beforehand with CONCURRENTLY on a big table (deployment.md)
    )


def downgrade() -> None:
    op.drop_index("ix_communications_certificate_due", table_name="communications")
