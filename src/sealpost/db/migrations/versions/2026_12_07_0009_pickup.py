"""Registered pickup: one row per communication delivered by pickup, and tenant defaults.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True))


def upgrade() -> None:
    op.create_table(
        "pickups",
        sa.Column(
            "communication_id",
            sa.String(36),
            sa.ForeignKey("communications.id"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("party_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("sender_name", sa.Text()),
        sa.Column("subject", sa.Text()),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("identification", sa.String(16), nullable=False),
        sa.Column("consent", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("hide_sender", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("phone", sa.String(32)),
        sa.Column("challenge_question", sa.Text()),
        sa.Column("challenge_hash", sa.String(200)),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("notice_communication_id", sa.String(36)),
        sa.Column("notice_status", sa.String(16)),
        sa.Column("notices_sent", sa.Integer(), nullable=False, server_default="0"),
        _at("notice_due_at"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _at("notified_at"),
        _at("expires_at"),
        _at("next_reminder_at"),
        _at("opened_at"),
        _at("identified_at"),
        sa.Column("identified_session", sa.String(64)),
        _at("offered_at"),
        _at("decided_at"),
        _at("handed_over_at"),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_pickups_state_due", "pickups", ["state", "notice_due_at"])
    op.create_index("ix_pickups_state_expires", "pickups", ["state", "expires_at"])
    op.create_table(
        "pickup_settings",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("identification", sa.String(16), nullable=False),
        sa.Column("consent", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pickup_settings")
    op.drop_index("ix_pickups_state_expires", table_name="pickups")
    op.drop_index("ix_pickups_state_due", table_name="pickups")
    op.drop_table("pickups")
