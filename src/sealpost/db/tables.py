"""Tables of the database layer itself: named leases (single-writer jobs).

Collected with the other domains' tables in ``sealpost.schema``; Alembic migrations
create them (``sealpost/db/migrations``)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    String,
    Table,
)

from sealpost.db.metadata import metadata

ledger_leases = Table(
    "ledger_leases",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
