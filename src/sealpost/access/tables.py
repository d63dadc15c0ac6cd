"""Tables of the access kit: links and page sessions, one-time code challenges.

Keyed by (tenant, subject type, subject id, party id), not by one domain's rows: the kit knows
no domain.  Collected in ``sealpost.schema``; created by migration 0006 (which moved the
signing links and code state here from the signature tables)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from sealpost.db.metadata import metadata

access_links = Table(
    "access_links",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(36), nullable=False),
    Column("party_id", String(36), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("ip", String(64)),
    Column("user_agent", Text),
    Index("ix_access_links_holder", "tenant_id", "subject_type", "subject_id", "party_id"),
)


access_challenges = Table(
    "access_challenges",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(36), nullable=False),
    Column("party_id", String(36), nullable=False),
    Column("channel", String(16)),
    Column("code_hash", String(64)),
    Column("expires_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("sends", Integer, nullable=False, server_default="0"),
    Column("sent_to", String(320)),
    Column("communication_id", String(36)),
    Column("code_session", String(64)),
    PrimaryKeyConstraint("tenant_id", "subject_type", "subject_id", "party_id"),
)
