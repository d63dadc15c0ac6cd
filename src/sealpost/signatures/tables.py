"""Tables of signature processes: documents, revisions, signers, tenant signing settings.

Links, page sessions and code state are the access kit's (``sealpost.access.tables``).

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
    Index(  # migration 0029: GET /v1/signatures?status=, in its page order
        "ix_signature_processes_tenant_status_created", "tenant_id", "status", "created_at", "id"
    ),
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
    Column("pending_signature", Text),
    Index("ix_signature_signers_process", "process_id", "number", unique=True),
    Index("ix_signature_signers_reminder", "next_reminder_at"),
)


tenant_signing_settings = Table(
    "tenant_signing_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("frame_ancestors", Text, nullable=False, server_default="[]"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("allow_active_content", Integer, nullable=False, server_default="0"),
)
