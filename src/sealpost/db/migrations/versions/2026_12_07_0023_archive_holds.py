"""Legal holds, their frozen message lists and exports of the mail archive (issue 15).

Also makes a purge final in the database: once ``purged_at`` is set it never changes again
(nor its ``purge_record_id``), so a purge cannot be quietly undone to make a message look
kept; migration 0019's triggers already refuse any other change and any delete.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "archive_holds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("thread_id", sa.String(36)),
        sa.Column("address", sa.String(320)),
        sa.Column("query", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed_by", sa.String(64), nullable=False),
        sa.Column("placed_at", ts, nullable=False),
        sa.Column("placed_record_id", sa.String(36), nullable=False),
        sa.Column("released_at", ts),
        sa.Column("released_by", sa.String(64)),
        sa.Column("release_reason", sa.Text),
        sa.Column("released_record_id", sa.String(36)),
    )
    op.create_index("ix_archive_holds_active", "archive_holds", ["tenant_id", "released_at"])
    op.create_table(
        "archive_hold_messages",
        sa.Column("hold_id", sa.String(36), sa.ForeignKey("archive_holds.id"), primary_key=True),
        sa.Column(
            "message_id", sa.String(36), sa.ForeignKey("archive_messages.id"), primary_key=True
        ),
    )
    op.create_table(
        "archive_exports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("thread_id", sa.String(36)),
        sa.Column("hold_id", sa.String(36)),
        sa.Column("query", sa.Text),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("pending_evidence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("removed_at", ts),
    )
    op.create_index("ix_archive_exports_tenant", "archive_exports", ["tenant_id", "created_at"])
    _purge_is_final()


def _purge_is_final() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION archive_messages_purge_final() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF OLD.purged_at IS NOT NULL AND (
                    NEW.purged_at IS DISTINCT FROM OLD.purged_at
                    OR NEW.purge_record_id IS DISTINCT FROM OLD.purge_record_id
                ) THEN
                    RAISE EXCEPTION 'archived messages are write-once: a purge is final';
                END IF;
                RETURN NEW;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER archive_messages_purge_final BEFORE UPDATE ON archive_messages "
            "FOR EACH ROW EXECUTE FUNCTION archive_messages_purge_final()"
        )
        return
    op.execute(
        "CREATE TRIGGER archive_messages_purge_final BEFORE UPDATE OF purged_at, purge_record_id "
        "ON archive_messages WHEN OLD.purged_at IS NOT NULL AND "
        "(NEW.purged_at IS NOT OLD.purged_at OR NEW.purge_record_id IS NOT OLD.purge_record_id) "
        "BEGIN SELECT RAISE(ABORT, 'archived messages are write-once: a purge is final'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER archive_messages_purge_final ON archive_messages")
        op.execute("DROP FUNCTION archive_messages_purge_final()")
    else:
        op.execute("DROP TRIGGER archive_messages_purge_final")
    op.drop_index("ix_archive_exports_tenant", table_name="archive_exports")
    op.drop_table("archive_exports")
    op.drop_table("archive_hold_messages")
    op.drop_index("ix_archive_holds_active", table_name="archive_holds")
    op.drop_table("archive_holds")
