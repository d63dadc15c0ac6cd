"""Tables of signature processes: documents, revisions, signers, links, tenant signing settings.

Collected with the other domains' tables in ``sealpost.schema``; Alembic migrations
create them (``sealpost/db/migrations``)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from sealpost.db.metadata import metadata

signature_processes = Table(
    "signature_processes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),
    Column("signing_order", String(16), nullable=False),
    Column("consent_text", Text, nullable=False),
    Column("consent_sha256", String(64), nullable=False),
    Column("reminder_hours", Text, nullable=False, server_default="[]"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("ended_reason", Text),
    Column("finalize_due", Integer, nullable=False, server_default="0"),
    Column("audit_sha256", String(64)),
    Column("idempotency_key", String(200)),
    Column("request_sha256", String(64)),
    Index("ix_signature_processes_tenant_created", "tenant_id", "created_at", "id"),
    Index("ix_signature_processes_status_expires", "status", "expires_at"),
    Index("ix_signature_processes_idempotency", "tenant_id", "idempotency_key", unique=True),
)


signature_documents = Table(
    "signature_documents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("process_id", String(36), ForeignKey("signature_processes.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("page_sizes", Text, nullable=False),
    Column("original_sha256", String(64), nullable=False),
    Column("current_sha256", String(64), nullable=False),
    Index("ix_signature_documents_process", "process_id", "number", unique=True),
)


signature_revisions = Table(
    "signature_revisions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("document_id", String(36), ForeignKey("signature_documents.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("signer_id", String(36)),
    Column("sha256_before", String(64), nullable=False),
    Column("sha256_after", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_signature_revisions_document", "document_id", "number", unique=True),
)


signature_signers = Table(
    "signature_signers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("process_id", String(36), ForeignKey("signature_processes.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("role", String(16), nullable=False),
    Column("sign_order", Integer, nullable=False),
    Column("identification", String(16), nullable=False),
    Column("fields", Text, nullable=False, server_default="[]"),
    Column("status", String(16), nullable=False),
    Column("notified_at", DateTime(timezone=True)),
    Column("next_reminder_at", DateTime(timezone=True)),
    Column("reminders_sent", Integer, nullable=False, server_default="0"),
    Column("identified_at", DateTime(timezone=True)),
    Column("viewed_at", DateTime(timezone=True)),
    Column("signed_at", DateTime(timezone=True)),
    Column("otp_hash", String(64)),
    Column("otp_expires_at", DateTime(timezone=True)),
    Column("otp_attempts", Integer, nullable=False, server_default="0"),
    Column("otp_sends", Integer, nullable=False, server_default="0"),
    Column("otp_sent_to", String(320)),
    Column("otp_communication_id", String(36)),
    Column("pending_signature", Text),
    Index("ix_signature_signers_process", "process_id", "number", unique=True),
    Index("ix_signature_signers_reminder", "next_reminder_at"),
)


signing_links = Table(
    "signing_links",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("signer_id", String(36), ForeignKey("signature_signers.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("ip", String(64)),
    Column("user_agent", Text),
    Index("ix_signing_links_signer", "signer_id"),
)


tenant_signing_settings = Table(
    "tenant_signing_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("frame_ancestors", Text, nullable=False, server_default="[]"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
