"""Where every domain's tables are collected: one line per domain.

``metadata`` here knows every table (foreign keys between domains resolve); the migrations
under ``sealpost/db/migrations`` create the same schema, and ``tests/db/test_migrations.py``
checks that the two agree.
"""

from __future__ import annotations

from sealpost.access import tables as access_tables
from sealpost.archive import tables as archive_tables
from sealpost.communications import tables as communications_tables
from sealpost.communications.tracking import tables as tracking_tables
from sealpost.db import tables as db_tables
from sealpost.db.metadata import metadata
from sealpost.deadlines import tables as deadlines_tables
from sealpost.events import tables as events_tables
from sealpost.ledger import tables as ledger_tables
from sealpost.pickup import tables as pickup_tables
from sealpost.sequences import tables as sequences_tables
from sealpost.signatures import tables as signatures_tables
from sealpost.sms import tables as sms_tables
from sealpost.tenants import tables as tenants_tables

DOMAIN_TABLES = (
    db_tables,
    ledger_tables,
    tenants_tables,
    events_tables,
    access_tables,
    communications_tables,
    tracking_tables,
    signatures_tables,
    pickup_tables,
    sms_tables,
    deadlines_tables,
    sequences_tables,
    archive_tables,
)

UNMANAGED = frozenset(name for module in DOMAIN_TABLES for name in getattr(module, "UNMANAGED", ()))
"""Tables and indexes the migrations create with one database's own DDL (full-text indexes,
expression indexes) that ``metadata`` does not describe; ``tests/db/test_migrations.py``
leaves them out."""

__all__ = ["DOMAIN_TABLES", "UNMANAGED", "metadata"]
