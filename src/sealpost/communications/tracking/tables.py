"""Tables of open and click tracking: each tenant's choice, and the tokens of each tracked
communication.  Collected in ``sealpost.schema``; created by migration 0017 (with
``communications.tracked_sha256``)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from sealpost.db.metadata import metadata

tracking_settings = Table(
    "tracking_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("opens", Integer, nullable=False, server_default="0"),
    Column("clicks", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

tracking_tokens = Table(
    "tracking_tokens",
    metadata,
    # SHA-256 of the token: the database alone does not give working tracking URLs
    Column("token_sha256", String(64), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("communication_id", String(36), ForeignKey("communications.id"), nullable=False),
    Column("kind", String(8), nullable=False),  # "open" | "click"
    Column("link", Integer),  # 1-based position among the rewritten links (clicks)
    Column("url", Text),  # the only place a click redirects to
    Column("hits", Integer, nullable=False, server_default="0"),
    Column("records", Integer, nullable=False, server_default="0"),
    Column("unrecorded", Integer, nullable=False, server_default="0"),
    Column("first_hit_at", DateTime(timezone=True)),
    Column("last_hit_at", DateTime(timezone=True)),
    Column("last_recorded_at", DateTime(timezone=True)),
    Index("ix_tracking_tokens_communication", "communication_id", "kind", "link"),
)
