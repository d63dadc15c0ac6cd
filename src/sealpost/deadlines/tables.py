"""Tables of legal deadlines: the days a tenant adds to a region's calendar, and each running
term with everything needed to compute it again.

Collected with the other domains' tables in ``sealpost.schema``; migration 0015 creates them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from sealpost.db.metadata import metadata

calendar_days = Table(
    "calendar_days",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("calendar", String(16), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
)
"""A tenant's local holidays and closure days on one region's calendar (``ES-CT``)."""

deadlines = Table(
    "deadlines",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(36), nullable=False),
    Column("rule", Text, nullable=False),
    # the rule as JSON (DeadlineRule.to_json)
    Column("trigger_record_id", String(36), nullable=False),
    Column("trigger_at", DateTime(timezone=True), nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("approaching_at", DateTime(timezone=True), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("calendar_name", String(64), nullable=False),
    Column("data_version", String(120), nullable=False),
    Column("computation", Text, nullable=False),
    # the whole computation as JSON (ComputedDeadline.to_json), as DeadlineSet sealed it
    Column("status", String(16), nullable=False),
    Column("record_id", String(36), nullable=False),
    # the DeadlineSet record
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("subject_type", "subject_id", name="uq_deadlines_subject"),
    Index("ix_deadlines_status_ends", "status", "ends_at"),
    Index("ix_deadlines_tenant_subject", "tenant_id", "subject_id"),
)
"""One term per subject (a communication has at most one deadline rule)."""
