"""The archive's unanswered-mail alerts (SLA policies and the alerts raised, once each) and
scheduled sends (issue 15).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "archive_sla_policies",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("scope", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(36), sa.ForeignKey("archive_teams.id")),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("first_reply_minutes", sa.Integer, nullable=False),
        sa.Column("reply_minutes", sa.Integer, nullable=False),
        sa.Column("warning_percent", sa.Integer),
        sa.Column("warning_before_minutes", sa.Integer),
        sa.Column("escalate_after_minutes", sa.Integer),
        sa.Column("reassign_after_minutes", sa.Integer),
        sa.Column("reassign_to", sa.String(16), nullable=False, server_default="none"),
        sa.Column("calendar", sa.String(16)),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("hours", sa.Text, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.UniqueConstraint("tenant_id", "scope", name="uq_archive_sla_policies_scope"),
    )
    op.create_table(
        "archive_sla_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("thread_id", sa.String(36), sa.ForeignKey("archive_threads.id"), nullable=False),
        sa.Column("clock_start", ts, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("due_at", ts, nullable=False),
        sa.Column("raised_at", ts, nullable=False),
        sa.Column("policy_id", sa.String(36), nullable=False),
        sa.Column("record_id", sa.String(36)),
        sa.UniqueConstraint("thread_id", "clock_start", "kind", name="uq_archive_sla_alerts_once"),
    )
    op.create_index(
        "ix_archive_sla_alerts_tenant", "archive_sla_alerts", ["tenant_id", "raised_at"]
    )
    op.create_table(
        "archive_scheduled_sends",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("created_by_agent_id", sa.String(36)),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("sender_name", sa.String(200)),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text),
        sa.Column("certified", sa.Boolean, nullable=False),
        sa.Column("pickup", sa.Boolean, nullable=False),
        sa.Column("requested_at", ts),
        sa.Column("send_at", ts, nullable=False),
        sa.Column("hold", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", ts),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("communication_id", sa.String(36)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("sent_at", ts),
        sa.Column("cancelled_at", ts),
    )
    op.create_index(
        "ix_archive_scheduled_sends_due", "archive_scheduled_sends", ["state", "send_at"]
    )
    op.create_index(
        "ix_archive_scheduled_sends_tenant",
        "archive_scheduled_sends",
        ["tenant_id", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_archive_scheduled_sends_tenant", "archive_scheduled_sends")
    op.drop_index("ix_archive_scheduled_sends_due", "archive_scheduled_sends")
    op.drop_table("archive_scheduled_sends")
    op.drop_index("ix_archive_sla_alerts_tenant", "archive_sla_alerts")
    op.drop_table("archive_sla_alerts")
    op.drop_table("archive_sla_policies")
