"""Tables of registered pickup: one row per communication delivered by pickup, and each
tenant's defaults.  Collected in ``sealpost.schema``; created by migration 0009
(``pickup_settings.hide_sender``: 0010; the SMS notice: 0011)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from sealpost.db.metadata import metadata

pickups = Table(
    "pickups",
    metadata,
    Column("communication_id", String(36), ForeignKey("communications.id"), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("party_id", String(36), nullable=False),
    Column("state", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("sender_name", Text),
    Column("subject", Text),
    Column("content_sha256", String(64), nullable=False),
    Column("identification", String(16), nullable=False),
    Column("consent", String(16), nullable=False),
    Column("policy", String(16), nullable=False),
    Column("hide_sender", Integer, nullable=False, server_default="0"),
    Column("phone", String(32)),
    Column("challenge_question", Text),
    Column("challenge_hash", String(200)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("notice_communication_id", String(36)),
    Column("notice_status", String(16)),
    Column("notices_sent", Integer, nullable=False, server_default="0"),
    Column("resends", Integer, nullable=False, server_default="0"),
    Column("notice_channels", String(16), nullable=False, server_default="email"),
    Column("notice_sms_id", String(36)),
    Column("notice_sms_status", String(16)),
    Column("notice_due_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("notified_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("next_reminder_at", DateTime(timezone=True)),
    Column("opened_at", DateTime(timezone=True)),
    Column("identified_at", DateTime(timezone=True)),
    Column("identified_session", String(64)),
    Column("offered_at", DateTime(timezone=True)),
    Column("decided_at", DateTime(timezone=True)),
    Column("handed_over_at", DateTime(timezone=True)),
    Column("reason", Text),
    Index("ix_pickups_state_due", "state", "notice_due_at"),
    Index("ix_pickups_state_expires", "state", "expires_at"),
)

pickup_settings = Table(
    "pickup_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("delivery", String(16), nullable=False),
    Column("identification", String(16), nullable=False),
    Column("consent", String(16), nullable=False),
    Column("policy", String(16), nullable=False),
    Column("hide_sender", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
