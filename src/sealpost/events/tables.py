"""Tables of events out: the outbox, per-subject counters, cursors, webhook endpoints and
their deliveries.

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
    String,
    Table,
    Text,
    text,
)

from sealpost.db.metadata import BigInt, metadata

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
