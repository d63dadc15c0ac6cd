"""Certified SMS: resuming a message segment by segment, and its certificates' versions.

- ``sms_segments.unanswered``: how many times a segment went out without an answer (no
  ``submit_sm_resp``: the one case the operator may have taken it twice).
- ``sms_messages.certificate_due`` / ``certificate_version``: a final SMS is due a certificate
  (issued by the certificate loop, as email's are); the versions issued so far.
- ``sms_certificates``: each issued version (its PDF is in the blob store by SHA-256), with
  the CertificateIssued record that recorded it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_segments") as batch:
        batch.add_column(sa.Column("unanswered", sa.Integer(), server_default="0", nullable=False))
    # Plain ALTER TABLE (no batch copy): sms_segments and sms_reports refer to sms_messages.
    op.add_column(
        "sms_messages",
        sa.Column("certificate_due", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "sms_messages",
        sa.Column("certificate_version", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index("ix_sms_messages_certificate_due", "sms_messages", ["certificate_due"])
    op.create_table(
        "sms_certificates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("sms_id", sa.String(36), sa.ForeignKey("sms_messages.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_sms_certificates_sha256"),
    )
    op.create_index(
        "ix_sms_certificates_version", "sms_certificates", ["sms_id", "version"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_sms_certificates_version", table_name="sms_certificates")
    op.drop_table("sms_certificates")
    op.drop_index("ix_sms_messages_certificate_due", table_name="sms_messages")
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy would trip the foreign keys
    # of sms_segments rows.
    op.drop_column("sms_messages", "certificate_version")
    op.drop_column("sms_messages", "certificate_due")
    with op.batch_alter_table("sms_segments") as batch:
        batch.drop_column("unanswered")
