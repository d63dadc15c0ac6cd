"""Named leases: how one process among many is elected for a single-writer job.

The ledger's sequencer and the events dispatcher each need exactly one active instance over a
shared database.  A lease is a row (name, holder, expires_at): taken when free or expired,
renewed by its holder, released on a clean stop; a holder that dies loses it when it expires.
A lease alone is not a fence: each job also checks it (``held_in``) inside the transaction
whose effects must come from one writer only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.db.tables import ledger_leases

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def acquire(engine: Engine, name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew ``name`` for ``holder``; False while another holder's lease runs."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_seconds)
    c = ledger_leases.c
    with write_transaction(engine) as conn:
        taken = conn.execute(
            update(ledger_leases)
            .where(c.name == name, or_(c.holder == holder, c.expires_at < now))
            .values(holder=holder, expires_at=expires)
        ).rowcount
    if taken:
        return True
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(ledger_leases).values(name=name, holder=holder, expires_at=expires))
    except IntegrityError:
        return False
    return True


def release(engine: Engine, name: str, holder: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            update(ledger_leases)
            .where(ledger_leases.c.name == name, ledger_leases.c.holder == holder)
            .values(expires_at=_EPOCH)
        )


def held_in(conn: Connection, name: str, holder: str) -> bool:
    """Inside a writing transaction: does ``holder`` still hold ``name``?  (Row-locked on
    PostgreSQL, so the lease cannot change hands before this transaction commits.)"""
    query = select(ledger_leases.c.holder, ledger_leases.c.expires_at).where(
        ledger_leases.c.name == name
    )
    if not is_sqlite(conn):
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None or row.holder != holder:
        return False
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return bool(expires > datetime.now(UTC))
