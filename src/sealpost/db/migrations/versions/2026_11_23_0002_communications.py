"""Certified email: communications, delivery attempts, SMTP credentials and relay networks,
tenant domains (DKIM), message contents, evidence certificates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _tenant_fk(table: str) -> sa.Column[str]:
    return sa.Column(
        "tenant_id",
        sa.String(36),
        sa.ForeignKey("tenants.id", name=f"fk_{table}_tenant_id_tenants"),
        nullable=False,
    )


def _communication_fk(table: str) -> sa.Column[str]:
    return sa.Column(
        "communication_id",
        sa.String(36),
        sa.ForeignKey("communications.id", name=f"fk_{table}_communication_id_communications"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "communications",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_fk("communications"),
        sa.Column("submission_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_size", sa.BigInteger, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_reply", sa.Text),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("warn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delay_warned", sa.Integer, nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_sha256", sa.String(64)),
        sa.Column("certificate_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("certificate_due", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_communications_submission_id", "communications", ["submission_id"])
    op.create_index("ix_communications_tenant_status", "communications", ["tenant_id", "status"])
    op.create_index(
        "ix_communications_tenant_submitted",
        "communications",
        ["tenant_id", "submitted_at", "id"],
    )
    op.create_index("ix_communications_due", "communications", ["status", "next_attempt_at"])
    op.create_index("ix_communications_message_id", "communications", ["message_id"])
    op.create_index(
        "ix_communications_idempotency",
        "communications",
        ["tenant_id", "idempotency_key", "recipient"],
        unique=True,
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.String(36), primary_key=True),
        _communication_fk("delivery_attempts"),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reply_code", sa.Integer),
        sa.Column("reply_text", sa.Text, nullable=False),
        sa.Column("remote_host", sa.String(255), nullable=False),
        sa.Column("remote_ip", sa.String(64)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
    )
    op.create_index(
        "ix_delivery_attempts_communication", "delivery_attempts", ["communication_id", "number"]
    )
    op.create_table(
        "smtp_credentials",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_fk("smtp_credentials"),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("username", name="uq_smtp_credentials_username"),
    )
    op.create_index("ix_smtp_credentials_tenant_id", "smtp_credentials", ["tenant_id"])
    op.create_table(
        "smtp_networks",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_fk("smtp_networks"),
        sa.Column("network", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("network", name="uq_smtp_networks_network"),
    )
    op.create_index("ix_smtp_networks_tenant_id", "smtp_networks", ["tenant_id"])
    op.create_table(
        "tenant_domains",
        sa.Column("id", sa.String(36), primary_key=True),
        _tenant_fk("tenant_domains"),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("dkim_selector", sa.String(63), nullable=False),
        sa.Column("dkim_private_key", sa.Text, nullable=False),
        sa.Column("dkim_public_record", sa.Text, nullable=False),
        sa.Column("pinned_keys", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("domain", name="uq_tenant_domains_domain"),
    )
    op.create_index("ix_tenant_domains_tenant_id", "tenant_domains", ["tenant_id"])
    op.create_table(
        "contents",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "evidence_certificates",
        sa.Column("id", sa.String(36), primary_key=True),
        _communication_fk("evidence_certificates"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_evidence_certificates_sha256"),
    )
    op.create_index(
        "ix_evidence_certificates_version",
        "evidence_certificates",
        ["communication_id", "version"],
        unique=True,
    )


def downgrade() -> None:
    for table in (
        "evidence_certificates",
        "contents",
        "tenant_domains",
        "smtp_networks",
        "smtp_credentials",
        "delivery_attempts",
        "communications",
    ):
        op.drop_table(table)
