"""Replies: answers to certified emails and SMS, the tenants' reply-capture switch, SMS
opt-outs (issue 14: a sequence stops on an answer or an opt-out).

``communication_replies`` (the bytes are in ``contents`` by SHA-256), ``reply_settings``,
``sms_replies`` and ``sms_opt_outs``; nothing existing changes.

Revision ID: 0018
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "communication_replies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column(
            "communication_id",
            sa.String(36),
            sa.ForeignKey("communications.id"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("subject", sa.Text),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_size", sa.BigInteger, nullable=False),
        sa.Column("automatic", sa.Integer, nullable=False, server_default="0"),
        sa.Column("automatic_reason", sa.Text),
        sa.Column("matched_by", sa.String(32), nullable=False),
        sa.Column("malformed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("record_id", sa.String(36), nullable=False),
    )
    op.create_index(
        "ix_communication_replies_thread",
        "communication_replies",
        ["communication_id", "received_at"],
    )
    op.create_index(
        "ix_communication_replies_once",
        "communication_replies",
        ["communication_id", "content_sha256"],
        unique=True,
    )
    op.create_table(
        "reply_settings",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("capture", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sms_replies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("sms_id", sa.String(36), sa.ForeignKey("sms_messages.id"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("opt_out", sa.Integer, nullable=False, server_default="0"),
        sa.Column("record_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_sms_replies_sms", "sms_replies", ["sms_id", "received_at"])
    op.create_table(
        "sms_opt_outs",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keyword", sa.String(16), nullable=False),
        sa.Column("sms_id", sa.String(36), nullable=False),
        sa.Column("reply_id", sa.String(36), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    op.drop_index("ix_sms_replies_sms", table_name="sms_replies")
    op.drop_table("sms_replies")
    op.drop_table("reply_settings")
    op.drop_index("ix_communication_replies_once", table_name="communication_replies")
    op.drop_index("ix_communication_replies_thread", table_name="communication_replies")
    op.drop_table("communication_replies")
