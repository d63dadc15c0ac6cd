"""Signatures: processes, their documents and revisions, signers, single-use links and
signing sessions, and each tenant's signing-page settings (frame ancestors).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_processes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signing_order", sa.String(length=16), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_sha256", sa.String(length=64), nullable=False),
        sa.Column("reminder_hours", sa.Text(), server_default="[]", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
        sa.Column("finalize_due", sa.Integer(), server_default="0", nullable=False),
        sa.Column("audit_sha256", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_signature_processes_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_processes")),
    )
    op.create_index(
        "ix_signature_processes_idempotency",
        "signature_processes",
        ["tenant_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(
        "ix_signature_processes_status_expires",
        "signature_processes",
        ["status", "expires_at"],
        unique=False,
    )
    op.create_index(
        "ix_signature_processes_tenant_created",
        "signature_processes",
        ["tenant_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "tenant_signing_settings",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("frame_ancestors", sa.Text(), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_tenant_signing_settings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_signing_settings")),
    )
    op.create_table(
        "signature_documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("process_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("page_sizes", sa.Text(), nullable=False),
        sa.Column("original_sha256", sa.String(length=64), nullable=False),
        sa.Column("current_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["signature_processes.id"],
            name=op.f("fk_signature_documents_process_id_signature_processes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_documents")),
    )
    op.create_index(
        "ix_signature_documents_process",
        "signature_documents",
        ["process_id", "number"],
        unique=True,
    )
    op.create_table(
        "signature_signers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("process_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("sign_order", sa.Integer(), nullable=False),
        sa.Column("identification", sa.String(length=16), nullable=False),
        sa.Column("fields", sa.Text(), server_default="[]", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_reminder_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("identified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("viewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("otp_hash", sa.String(length=64), nullable=True),
        sa.Column("otp_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("otp_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("otp_sends", sa.Integer(), server_default="0", nullable=False),
        sa.Column("otp_sent_to", sa.String(length=320), nullable=True),
        sa.Column("otp_communication_id", sa.String(length=36), nullable=True),
        sa.Column("pending_signature", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["signature_processes.id"],
            name=op.f("fk_signature_signers_process_id_signature_processes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_signers")),
    )
    op.create_index(
        "ix_signature_signers_process", "signature_signers", ["process_id", "number"], unique=True
    )
    op.create_index(
        "ix_signature_signers_reminder", "signature_signers", ["next_reminder_at"], unique=False
    )
    op.create_table(
        "signature_revisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("signer_id", sa.String(length=36), nullable=True),
        sa.Column("sha256_before", sa.String(length=64), nullable=False),
        sa.Column("sha256_after", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["signature_documents.id"],
            name=op.f("fk_signature_revisions_document_id_signature_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_revisions")),
    )
    op.create_index(
        "ix_signature_revisions_document",
        "signature_revisions",
        ["document_id", "number"],
        unique=True,
    )
    op.create_table(
        "signing_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("signer_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signer_id"],
            ["signature_signers.id"],
            name=op.f("fk_signing_links_signer_id_signature_signers"),
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_signing_links")),
    )
    op.create_index("ix_signing_links_signer", "signing_links", ["signer_id"], unique=False)


def downgrade() -> None:
    for table in (
        "signing_links",
        "signature_revisions",
        "signature_signers",
        "signature_documents",
        "tenant_signing_settings",
        "signature_processes",
    ):
        op.drop_table(table)
