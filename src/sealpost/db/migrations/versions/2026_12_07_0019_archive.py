"""The mail archive's core (issue 15): messages (write-once), sightings, threads and their
Message-IDs, agents, teams, per-tenant archive settings, agents' notifications; and
``api_keys.agent_id`` (an archive agent's key).

Write-once is enforced by the database too: a trigger refuses any DELETE of an archived
message and any UPDATE of what was archived (its bytes' digest, headers, time, record); only
the index state, the thread and the purge columns may change.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

FROZEN = (
    "id",
    "tenant_id",
    "sha256",
    "size",
    "message_id",
    "subject",
    "from_address",
    "to_addresses",
    "cc_addresses",
    "sent_at",
    "archived_at",
    "direction",
    "has_attachments",
    "attachment_names",
    "parts",
    "malformed",
    "record_id",
    "source_kind",
)
"""The columns of ``archive_messages`` that never change once written."""


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(36)))
    op.create_table(
        "archive_messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("from_address", sa.String(320), nullable=False, server_default=""),
        sa.Column("to_addresses", sa.Text, nullable=False, server_default="[]"),
        sa.Column("cc_addresses", sa.Text, nullable=False, server_default="[]"),
        sa.Column("sent_at", ts),
        sa.Column("archived_at", ts, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("thread_id", sa.String(36), nullable=False),
        sa.Column("has_attachments", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("attachment_names", sa.Text, nullable=False, server_default="[]"),
        sa.Column("parts", sa.Text, nullable=False, server_default="[]"),
        sa.Column("malformed", sa.Text),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("index_state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("index_error", sa.Text),
        sa.Column("purged_at", ts),
        sa.Column("purge_record_id", sa.String(36)),
        sa.UniqueConstraint("tenant_id", "sha256", name="uq_archive_messages_content"),
    )
    op.create_index(
        "ix_archive_messages_archived", "archive_messages", ["tenant_id", "archived_at", "id"]
    )
    op.create_index("ix_archive_messages_thread", "archive_messages", ["thread_id", "archived_at"])
    op.create_index("ix_archive_messages_index_state", "archive_messages", ["index_state"])
    op.create_table(
        "archive_sightings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "message_id", sa.String(36), sa.ForeignKey("archive_messages.id"), nullable=False
        ),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.Text, nullable=False, server_default=""),
        sa.Column("seen_at", ts, nullable=False),
        sa.UniqueConstraint(
            "message_id", "source_kind", "source_ref", name="uq_archive_sightings_source"
        ),
    )
    op.create_table(
        "archive_threads",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("subject_key", sa.Text, nullable=False, server_default=""),
        sa.Column("customer_address", sa.String(320), nullable=False, server_default=""),
        sa.Column("owner_agent_id", sa.String(36)),
        sa.Column("team_id", sa.String(36)),
        sa.Column("waiting_on", sa.String(16), nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("last_message_at", ts, nullable=False),
        sa.Column("last_inbound_at", ts),
        sa.Column("last_outbound_at", ts),
    )
    op.create_index(
        "ix_archive_threads_tenant", "archive_threads", ["tenant_id", "last_message_at"]
    )
    op.create_index("ix_archive_threads_owner", "archive_threads", ["tenant_id", "owner_agent_id"])
    op.create_index(
        "ix_archive_threads_subject",
        "archive_threads",
        ["tenant_id", "subject_key", "customer_address"],
    )
    op.create_table(
        "archive_thread_keys",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("thread_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "archive_agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("disabled_at", ts),
        sa.UniqueConstraint("tenant_id", "email", name="uq_archive_agents_email"),
    )
    op.create_table(
        "archive_teams",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_archive_teams_name"),
    )
    op.create_table(
        "archive_team_members",
        sa.Column("team_id", sa.String(36), sa.ForeignKey("archive_teams.id"), primary_key=True),
        sa.Column("agent_id", sa.String(36), sa.ForeignKey("archive_agents.id"), primary_key=True),
    )
    op.create_table(
        "archive_settings",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("retention_days", sa.Integer),
        sa.Column("own_domains", sa.Text, nullable=False, server_default="[]"),
        sa.Column("journal_token", sa.String(64), nullable=False, unique=True),
        sa.Column("updated_at", ts, nullable=False),
    )
    op.create_table(
        "archive_notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("agent_id", sa.String(36), sa.ForeignKey("archive_agents.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("thread_id", sa.String(36)),
        sa.Column("message_id", sa.String(36)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("read_at", ts),
    )
    op.create_index(
        "ix_archive_notifications_agent",
        "archive_notifications",
        ["agent_id", "read_at", "created_at"],
    )
    _write_once()


def _write_once() -> None:
    if op.get_bind().dialect.name == "postgresql":
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN)
        op.execute(
            f"""
            CREATE FUNCTION archive_messages_write_once() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    RAISE EXCEPTION 'archived messages are write-once: no delete';
                END IF;
                IF {changed} THEN
                    RAISE EXCEPTION 'archived messages are write-once: no change';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER archive_messages_write_once BEFORE UPDATE OR DELETE "
            "ON archive_messages FOR EACH ROW EXECUTE FUNCTION archive_messages_write_once()"
        )
        return
    op.execute(
        "CREATE TRIGGER archive_messages_no_delete BEFORE DELETE ON archive_messages "
        "BEGIN SELECT RAISE(ABORT, 'archived messages are write-once: no delete'); END"
    )
    op.execute(
        f"CREATE TRIGGER archive_messages_no_change BEFORE UPDATE OF {', '.join(FROZEN)} "
        "ON archive_messages "
        f"WHEN {' OR '.join(f'NEW.{c} IS NOT OLD.{c}' for c in FROZEN)} "
        "BEGIN SELECT RAISE(ABORT, 'archived messages are write-once: no change'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER archive_messages_write_once ON archive_messages")
        op.execute("DROP FUNCTION archive_messages_write_once()")
    else:
        op.execute("DROP TRIGGER archive_messages_no_delete")
        op.execute("DROP TRIGGER archive_messages_no_change")
    op.drop_index("ix_archive_notifications_agent", table_name="archive_notifications")
    op.drop_table("archive_notifications")
    op.drop_table("archive_settings")
    op.drop_table("archive_team_members")
    op.drop_table("archive_teams")
    op.drop_table("archive_agents")
    op.drop_table("archive_thread_keys")
    op.drop_index("ix_archive_threads_subject", table_name="archive_threads")
    op.drop_index("ix_archive_threads_owner", table_name="archive_threads")
    op.drop_index("ix_archive_threads_tenant", table_name="archive_threads")
    op.drop_table("archive_threads")
    op.drop_table("archive_sightings")
    op.drop_index("ix_archive_messages_index_state", table_name="archive_messages")
    op.drop_index("ix_archive_messages_thread", table_name="archive_messages")
    op.drop_index("ix_archive_messages_archived", table_name="archive_messages")
    op.drop_table("archive_messages")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("agent_id")
