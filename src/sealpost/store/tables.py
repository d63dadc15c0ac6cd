"""Table definitions (SQLAlchemy 2 Core metadata); Alembic migrations create them.

Names follow the domain: a tenant, an API key, an evidence record, a tree head.  Binary hashes
are stored as raw bytes; ids are UUID strings so they read the same in every database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigInt = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("label", String(200), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

evidence_records = Table(
    "evidence_records",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject_type", String(40), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("canonical", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("leaf_index", BigInteger, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_evidence_records_tenant_subject", "tenant_id", "subject_id"),
    Index(
        "ix_evidence_records_pending",
        "seq",
        sqlite_where=text("leaf_index IS NULL"),
        postgresql_where=text("leaf_index IS NULL"),
    ),
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary(32), nullable=False),
)

ledger_state = Table(
    "ledger_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("head_time", DateTime(timezone=True)),
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("head_time", DateTime(timezone=True), nullable=False),
    Column("checkpoint", Text, nullable=False),
    Column("signature_algorithm", String(40), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("timestamp_token", LargeBinary, nullable=False),
    Column("seal_chain", Text, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("pem", Text, nullable=False),
)

ledger_leases = Table(
    "ledger_leases",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

communications = Table(
    "communications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("submission_id", String(36), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("via", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text),
    Column("message_id", Text, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("content_size", BigInteger, nullable=False),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_reply", Text),
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("warn_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("delay_warned", Integer, nullable=False, server_default="0"),
    Column("idempotency_key", String(200)),
    Column("request_sha256", String(64)),
    Column("certificate_version", Integer, nullable=False, server_default="0"),
    Column("certificate_due", Integer, nullable=False, server_default="0"),
    Index("ix_communications_tenant_status", "tenant_id", "status"),
    Index("ix_communications_tenant_submitted", "tenant_id", "submitted_at", "id"),
    Index("ix_communications_due", "status", "next_attempt_at"),
    Index("ix_communications_message_id", "message_id"),
    Index(
        "ix_communications_idempotency", "tenant_id", "idempotency_key", "recipient", unique=True
    ),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("communication_id", String(36), ForeignKey("communications.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("worker", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reply_code", Integer),
    Column("reply_text", Text, nullable=False),
    Column("remote_host", String(255), nullable=False),
    Column("remote_ip", String(64)),
    Column("details", Text, nullable=False),
    Column("record_id", String(36), nullable=False),
    Index("ix_delivery_attempts_communication", "communication_id", "number"),
)

smtp_credentials = Table(
    "smtp_credentials",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

smtp_networks = Table(
    "smtp_networks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("network", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tenant_domains = Table(
    "tenant_domains",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("domain", String(255), nullable=False, unique=True),
    Column("dkim_selector", String(63), nullable=False),
    Column("dkim_private_key", Text, nullable=False),
    Column("dkim_public_record", Text, nullable=False),
    Column("pinned_keys", Text, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

contents = Table(
    "contents",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

evidence_certificates = Table(
    "evidence_certificates",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("communication_id", String(36), ForeignKey("communications.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("record_id", String(36), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_evidence_certificates_version", "communication_id", "version", unique=True),
)

# -- events out (outbox, webhooks) -----------------------------------------------------------

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("type", String(100), nullable=False),
    Column("subject_type", String(40), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("record_id", String(36)),
    Column("payload", Text, nullable=False),
    Column("position", BigInteger, unique=True),
    Index("ix_outbox_events_tenant_position", "tenant_id", "position"),
    Index("ix_outbox_events_tenant_time", "tenant_id", "time"),
    Index(
        "ix_outbox_events_unpositioned",
        "seq",
        sqlite_where=text("position IS NULL"),
        postgresql_where=text("position IS NULL"),
    ),
)

event_subjects = Table(
    "event_subjects",
    metadata,
    Column("subject_type", String(40), primary_key=True),
    Column("subject_id", String(64), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
)

outbox_cursors = Table(
    "outbox_cursors",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("event_types", Text, nullable=False, server_default="[]"),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text),
    Column("previous_secret_until", DateTime(timezone=True)),
    Column("enabled", Integer, nullable=False, server_default="1"),
    Column("disabled_reason", Text),
    Column("disabled_at", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("endpoint_id", String(36), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("subject", String(110), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # only pending deliveries are ever searched for work: partial indexes stay small however
    # long the history of delivered ones grows
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        "position",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_order",
        "endpoint_id",
        "subject",
        "position",
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
    Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    Index("ix_webhook_deliveries_event", "event_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("delivery_id", String(36), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("endpoint_id", String(36), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer),
    Column("response_body", Text),
    Column("error", Text),
    Column("success", Integer, nullable=False),
    Index("ix_webhook_attempts_endpoint_started", "endpoint_id", "started_at"),
    Index("ix_webhook_attempts_delivery", "delivery_id", "number"),
)

# -- signatures ------------------------------------------------------------------------------

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
