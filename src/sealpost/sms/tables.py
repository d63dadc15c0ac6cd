"""Tables of certified SMS: one row per message, one per segment, and every delivery report
exactly as the operator sent it.

Collected with the other domains' tables in ``sealpost.schema``; migrations 0008, 0012 and 0013
create them."""

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
)

from sealpost.db.metadata import metadata

sms_messages = Table(
    "sms_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("sender", String(32), nullable=False),
    Column("recipient", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("text_sha256", String(64), nullable=False),
    # the commitment's nonce (hex) of an access-secret text; null otherwise (migration 0013)
    Column("text_nonce", String(32)),
    Column("encoding", String(8), nullable=False),
    Column("segment_count", Integer, nullable=False),
    Column("details", Text, nullable=False),
    Column("provider", String(16)),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("relayed_at", DateTime(timezone=True)),
    Column("confirm_by", DateTime(timezone=True)),
    Column("final_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("idempotency_key", String(200)),
    Column("request_sha256", String(64)),
    Column("certificate_due", Integer, nullable=False, server_default="0"),
    Column("certificate_auto", Integer, nullable=False, server_default="1"),
    # 0: a certificate only when asked for, e.g. a reminder sequence's plain ``sms`` step
    Column("certificate_version", Integer, nullable=False, server_default="0"),
    Index("ix_sms_messages_due", "status", "next_attempt_at"),
    Index("ix_sms_messages_confirm", "status", "confirm_by"),
    Index("ix_sms_messages_tenant_submitted", "tenant_id", "submitted_at", "id"),
    Index("ix_sms_messages_idempotency", "tenant_id", "idempotency_key", unique=True),
    Index("ix_sms_messages_certificate_due", "certificate_due"),
)

sms_segments = Table(
    "sms_segments",
    metadata,
    Column("sms_id", String(36), ForeignKey("sms_messages.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("provider", String(16)),
    Column("message_id", String(65)),
    Column("state", String(16), nullable=False),
    Column("status", String(64)),
    Column("reported_at", DateTime(timezone=True)),
    Column("report_sha256", String(64)),
    Column("unanswered", Integer, nullable=False, server_default="0"),
    Index("ix_sms_segments_operator_id", "provider", "message_id"),
)

sms_reports = Table(
    "sms_reports",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("provider", String(16), nullable=False),
    Column("message_id", String(65), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status", String(64), nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("applied", Integer, nullable=False, server_default="0"),
    Index("ix_sms_reports_operator_id", "provider", "message_id"),
    Index("ix_sms_reports_pending", "applied", "received_at"),
)

sms_certificates = Table(
    "sms_certificates",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sms_id", String(36), ForeignKey("sms_messages.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("record_id", String(36), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_sms_certificates_version", "sms_id", "version", unique=True),
)

sms_replies = Table(
    "sms_replies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("sms_id", String(36), ForeignKey("sms_messages.id"), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("destination", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("text_sha256", String(64), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("opt_out", Integer, nullable=False, server_default="0"),
    Column("record_id", String(36), nullable=False),
    Index("ix_sms_replies_sms", "sms_id", "received_at"),
)
"""Mobile-originated answers to an SMS, the operator's PDU (or request) body kept exactly
(migration 0018)."""

sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("opted_out_at", DateTime(timezone=True), nullable=False),
    Column("keyword", String(16), nullable=False),
    Column("sms_id", String(36), nullable=False),
    Column("reply_id", String(36), nullable=False),
)
"""Numbers that answered an opt-out keyword (STOP, BAJA, ...) to a tenant's SMS (migration 0018)."""
