"""The archive's SLA: when each policy scope was first created (``archive_sla_scopes``).

A deleted and re-created policy used to count its clocks from its new creation, erasing a
breach about to fall due; the first creation of any policy of the scope is kept here instead
(filled from the policies that exist).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_sla_scopes",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("scope", sa.String(36), primary_key=True),
        sa.Column("first_created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO archive_sla_scopes (tenant_id, scope, first_created_at) "
        "SELECT tenant_id, scope, MIN(created_at) FROM archive_sla_policies "
        "GROUP BY tenant_id, scope"
    )


def downgrade() -> None:
    op.drop_table("archive_sla_scopes")
