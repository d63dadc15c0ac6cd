"""Certified SMS: messages, their segments (one operator message id each) and the delivery
reports exactly as received.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirm_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_sms_messages_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_messages")),
    )
    op.create_index("ix_sms_messages_due", "sms_messages", ["status", "next_attempt_at"])
    op.create_index("ix_sms_messages_confirm", "sms_messages", ["status", "confirm_by"])
    op.create_index(
        "ix_sms_messages_tenant_submitted", "sms_messages", ["tenant_id", "submitted_at", "id"]
    )
    op.create_index(
        "ix_sms_messages_idempotency",
        "sms_messages",
        ["tenant_id", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "sms_segments",
        sa.Column("sms_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("message_id", sa.String(length=65), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["sms_id"], ["sms_messages.id"], name=op.f("fk_sms_segments_sms_id_sms_messages")
        ),
        sa.PrimaryKeyConstraint("sms_id", "number", name=op.f("pk_sms_segments")),
    )
    op.create_index("ix_sms_segments_operator_id", "sms_segments", ["provider", "message_id"])
    op.create_table(
        "sms_reports",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=65), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("applied", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_sms_reports")),
    )
    op.create_index("ix_sms_reports_operator_id", "sms_reports", ["provider", "message_id"])
    op.create_index("ix_sms_reports_pending", "sms_reports", ["applied", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_reports_pending", table_name="sms_reports")
    op.drop_index("ix_sms_reports_operator_id", table_name="sms_reports")
    op.drop_table("sms_reports")
    op.drop_index("ix_sms_segments_operator_id", table_name="sms_segments")
    op.drop_table("sms_segments")
    for name in (
        "ix_sms_messages_idempotency",
        "ix_sms_messages_tenant_submitted",
        "ix_sms_messages_confirm",
        "ix_sms_messages_due",
    ):
        op.drop_index(name, table_name="sms_messages")
    op.drop_table("sms_messages")
