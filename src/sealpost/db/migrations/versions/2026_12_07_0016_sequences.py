"""Reminder sequences (issue 14): definitions, enrolments, steps, external stop ids, and
each tenant's settings (the payment link's base URL); ``certificate_auto`` on communications
and SMS (0: a certificate only on request, for a sequence's plain ``email``/``sms`` steps).

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sequences",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_sequences_tenant", "sequences", ["tenant_id", "created_at"])
    op.create_table(
        "sequence_enrolments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("sequence_id", sa.String(36), sa.ForeignKey("sequences.id"), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stop_cause", sa.String(32)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("person", sa.Text, nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("payment_token", sa.String(64), nullable=False, unique=True),
        sa.Column("opt_out_token", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS),
    )
    op.create_index(
        "ix_sequence_enrolments_sequence",
        "sequence_enrolments",
        ["sequence_id", "variant", "status"],
    )
    op.create_table(
        "sequence_steps",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "enrolment_id",
            sa.String(36),
            sa.ForeignKey("sequence_enrolments.id"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("planned_at", _TS, nullable=False),
        sa.Column("due_at", _TS),
        sa.Column("sent_at", _TS),
        sa.Column("message_type", sa.String(16)),
        sa.Column("message_id", sa.String(36)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", _TS),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("enrolment_id", "number", name="uq_sequence_steps_number"),
    )
    op.create_index("ix_sequence_steps_due", "sequence_steps", ["status", "due_at"])
    op.create_index("ix_sequence_steps_message", "sequence_steps", ["message_id"])
    op.create_table(
        "sequence_external_ids",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("external_id", sa.String(200), primary_key=True),
        sa.Column(
            "enrolment_id",
            sa.String(36),
            sa.ForeignKey("sequence_enrolments.id"),
            primary_key=True,
        ),
    )
    op.create_table(
        "sequence_settings",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("payment_link_base", sa.String(500)),
        sa.Column("updated_at", _TS, nullable=False),
    )
    # a plain ``email``/``sms`` step's message: its certificate only when asked for
    for table in ("communications", "sms_messages"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("certificate_auto", sa.Integer, nullable=False, server_default="1")
            )


def downgrade() -> None:
    for table in ("sms_messages", "communications"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("certificate_auto")
    op.drop_table("sequence_settings")
    op.drop_table("sequence_external_ids")
    op.drop_index("ix_sequence_steps_message", "sequence_steps")
    op.drop_index("ix_sequence_steps_due", "sequence_steps")
    op.drop_table("sequence_steps")
    op.drop_index("ix_sequence_enrolments_sequence", "sequence_enrolments")
    op.drop_table("sequence_enrolments")
    op.drop_index("ix_sequences_tenant", "sequences")
    op.drop_table("sequences")
