"""The mail archive's IMAP pull (issue 15): configured mailboxes with the state of their
attempts and the worker's lease, and each folder's cursor (UIDVALIDITY and last UID).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "archive_mailboxes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("tls", sa.String(16), nullable=False),
        sa.Column("username", sa.String(320), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("folders", sa.Text, nullable=False, server_default='["INBOX"]'),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default="1"),
        sa.Column("state", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("last_error", sa.Text),
        sa.Column("failing_since", ts),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_at", ts),
        sa.Column("last_success_at", ts),
        sa.Column("next_attempt_at", ts, nullable=False),
        sa.Column("messages_fetched", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", ts),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_archive_mailboxes_name"),
    )
    op.create_index("ix_archive_mailboxes_due", "archive_mailboxes", ["enabled", "next_attempt_at"])
    op.create_table(
        "archive_mailbox_folders",
        sa.Column(
            "mailbox_id", sa.String(36), sa.ForeignKey("archive_mailboxes.id"), primary_key=True
        ),
        sa.Column("folder", sa.String(1000), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("messages_fetched", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("synced_at", ts),
    )


def downgrade() -> None:
    op.drop_table("archive_mailbox_folders")
    op.drop_index("ix_archive_mailboxes_due", table_name="archive_mailboxes")
    op.drop_table("archive_mailboxes")
