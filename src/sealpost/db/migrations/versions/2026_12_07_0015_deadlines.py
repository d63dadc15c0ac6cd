"""Legal deadlines: a tenant's own days on a region's calendar (``calendar_days``) and each
running term (``deadlines``) with its rule, calendar name and data version.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_days",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("calendar", sa.String(16), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    op.create_table(
        "deadlines",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("trigger_record_id", sa.String(36), nullable=False),
        sa.Column("trigger_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approaching_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("calendar_name", sa.String(64), nullable=False),
        sa.Column("data_version", sa.String(120), nullable=False),
        sa.Column("computation", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("subject_type", "subject_id", name="uq_deadlines_subject"),
    )
    op.create_index("ix_deadlines_status_ends", "deadlines", ["status", "ends_at"])
    op.create_index("ix_deadlines_tenant_subject", "deadlines", ["tenant_id", "subject_id"])


def downgrade() -> None:
    op.drop_index("ix_deadlines_tenant_subject", "deadlines")
    op.drop_index("ix_deadlines_status_ends", "deadlines")
    op.drop_table("deadlines")
    op.drop_table("calendar_days")
