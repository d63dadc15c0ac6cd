"""Tables of reminder sequences: definitions, enrolments, their steps and the external ids
an enrolment stops on.  Collected in ``sealpost.schema``; created by migration 0016."""

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
    UniqueConstraint,
)

from sealpost.db.metadata import metadata

sequences = Table(
    "sequences",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_sequences_tenant", "tenant_id", "created_at"),
)

sequence_enrolments = Table(
    "sequence_enrolments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("sequence_id", String(36), ForeignKey("sequences.id"), nullable=False),
    Column("variant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("stop_cause", String(32)),
    Column("outcome", String(32)),
    Column("person", Text, nullable=False),
    Column("language", String(16), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("variables", Text, nullable=False),
    Column("payment_token", String(64), nullable=False, unique=True),
    Column("opt_out_token", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("stopped_at", DateTime(timezone=True)),
    Index("ix_sequence_enrolments_sequence", "sequence_id", "variant", "status"),
)

sequence_steps = Table(
    "sequence_steps",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("enrolment_id", String(36), ForeignKey("sequence_enrolments.id"), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("number", Integer, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("message_type", String(16)),
    Column("message_id", String(36)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("error", Text),
    UniqueConstraint("enrolment_id", "number", name="uq_sequence_steps_number"),
    Index("ix_sequence_steps_due", "status", "due_at"),
    Index("ix_sequence_steps_message", "message_id"),
)

sequence_external_ids = Table(
    "sequence_external_ids",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("external_id", String(200), primary_key=True),
    Column("enrolment_id", String(36), ForeignKey("sequence_enrolments.id"), primary_key=True),
)

sequence_settings = Table(
    "sequence_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("payment_link_base", String(500)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
