"""Tables of communications: one row per recipient, delivery attempts, message contents
and evidence certificates.

Collected with the other domains' tables in ``sealpost.schema``; Alembic migrations
create them (``sealpost/db/migrations``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    func,
    text,
)

from sealpost.db.metadata import metadata

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
    # the copy to transmit when open and click tracking rewrote it (migration 0017); NULL: the
    # message as submitted (content_sha256)
    Column("tracked_sha256", String(64)),
    Column("certificate_auto", Integer, nullable=False, server_default="1"),
    # 0: a certificate only when asked for (GET .../certificate.pdf), e.g. a reminder
    # sequence's plain ``email`` step; migration 0016
    # migration 0029: each filter of GET /v1/communications ends in (submitted_at, id), the
    # order of its pages
    Index("ix_communications_tenant_status_submitted", "tenant_id", "status", "submitted_at", "id"),
    Index("ix_communications_tenant_submitted", "tenant_id", "submitted_at", "id"),
    Index("ix_communications_due", "status", "next_attempt_at"),
    Index("ix_communications_message_id", "message_id"),
    Index(  # migration 0027: the certificate backlog (/metrics) and the loop's candidates
        "ix_communications_certificate_due",
        "updated_at",
        sqlite_where=text("certificate_due = 1"),
        postgresql_where=text("certificate_due = 1"),
    ),
    Index(
        "ix_communications_idempotency", "tenant_id", "idempotency_key", "recipient", unique=True
    ),
)

Index(  # migration 0029: ?recipient= compares lower-case (the address's case is not its identity)
    "ix_communications_tenant_recipient",
    communications.c.tenant_id,
    func.lower(communications.c.recipient),
    communications.c.submitted_at,
    communications.c.id,
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

communication_replies = Table(
    "communication_replies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("communication_id", String(36), ForeignKey("communications.id"), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("envelope_from", String(320), nullable=False),
    Column("message_id", Text),
    Column("subject", Text),
    Column("content_sha256", String(64), nullable=False),
    Column("content_size", BigInteger, nullable=False),
    Column("automatic", Integer, nullable=False, server_default="0"),
    Column("automatic_reason", Text),
    Column("matched_by", String(32), nullable=False),
    Column("malformed", Integer, nullable=False, server_default="0"),
    Column("record_id", String(36), nullable=False),
    Index("ix_communication_replies_thread", "communication_id", "received_at"),
    Index("ix_communication_replies_once", "communication_id", "content_sha256", unique=True),
)
"""Replies received for a communication (migration 0018); the bytes are in ``contents``."""


reply_settings = Table(
    "reply_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("capture", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""A tenant's reply capture (``PUT /v1/settings/replies``); no row: off."""

# -- events out (outbox, webhooks) -----------------------------------------------------------
