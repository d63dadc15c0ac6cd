"""All SQL of legal holds, the retention purge and exports.  Methods ending in ``_in`` run in
the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, tuple_, update

from sealpost.archive.model import Hold
from sealpost.archive.tables import (
    archive_exports,
    archive_hold_messages,
    archive_holds,
    archive_messages,
    archive_settings,
)
from sealpost.ledger.repository import as_utc, as_utc_or_none

h = archive_holds.c
m = archive_messages.c


def hold_from_row(row: Any, frozen: int = 0) -> Hold:
    return Hold(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        thread_id=row.thread_id,
        address=row.address,
        query=row.query,
        reason=row.reason,
        placed_by=row.placed_by,
        placed_at=as_utc(row.placed_at),
        placed_record_id=row.placed_record_id,
        released_at=as_utc_or_none(row.released_at),
        released_by=row.released_by,
        release_reason=row.release_reason,
        released_record_id=row.released_record_id,
        frozen_count=frozen,
    )


def _address_clause(address: str) -> Any:
    quoted = json.dumps(address)
    return or_(
        m.from_address == address,
        m.to_addresses.contains(quoted, autoescape=True),
        m.cc_addresses.contains(quoted, autoescape=True),
    )


class HoldRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lock_tenant_in(self, conn: Connection, tenant_id: str) -> None:
        """Serialise placing holds and purging for one tenant: both lock the tenant's archive
        settings row (created by the caller first) on PostgreSQL; SQLite has one writer."""
        if conn.dialect.name == "postgresql":
            s = archive_settings.c
            conn.execute(select(s.tenant_id).where(s.tenant_id == tenant_id).with_for_update())

    # -- holds ---------------------------------------------------------------------------------

    def insert_hold_in(self, conn: Connection, row: dict[str, Any], frozen: Sequence[str]) -> None:
        conn.execute(insert(archive_holds).values(**row))
        if frozen:
            conn.execute(
                insert(archive_hold_messages),
                [{"hold_id": row["id"], "message_id": i} for i in frozen],
            )

    def release_in(self, conn: Connection, hold_id: str, **values: Any) -> bool:
        """Compare-and-set: False when the hold was released already (a concurrent release)."""
        done = conn.execute(
            update(archive_holds).where(h.id == hold_id, h.released_at.is_(None)).values(**values)
        ).rowcount
        return bool(done)

    def hold_in(self, conn: Connection, tenant_id: str, hold_id: str) -> Hold | None:
        row = conn.execute(
            select(archive_holds).where(h.id == hold_id, h.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        frozen = conn.execute(
            select(func.count())
            .select_from(archive_hold_messages)
            .where(archive_hold_messages.c.hold_id == hold_id)
        ).scalar_one()
        return hold_from_row(row, int(frozen))

    def hold(self, tenant_id: str, hold_id: str) -> Hold | None:
        with self.engine.connect() as conn:
            return self.hold_in(conn, tenant_id, hold_id)

    def holds(self, tenant_id: str, *, active_only: bool, limit: int) -> list[Hold]:
        query = select(archive_holds.c.id).where(h.tenant_id == tenant_id)
        if active_only:
            query = query.where(h.released_at.is_(None))
        query = query.order_by(h.placed_at.desc(), h.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
            return [hold for i in ids if (hold := self.hold_in(conn, tenant_id, i))]

    def active_holds_in(self, conn: Connection, tenant_id: str) -> list[Hold]:
        rows = conn.execute(
            select(archive_holds).where(h.tenant_id == tenant_id, h.released_at.is_(None))
        ).all()
        return [hold_from_row(r) for r in rows]

    def frozen_ids_in(self, conn: Connection, hold_id: str) -> set[str]:
        hm = archive_hold_messages.c
        return set(conn.execute(select(hm.message_id).where(hm.hold_id == hold_id)).scalars())

    def unindexed_among_in(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the search has not indexed yet."""
        if not ids:
            return set()
        rows = conn.execute(
            select(m.id).where(m.id.in_(list(ids)), m.index_state.in_(("pending", "failed")))
        ).scalars()
        return set(rows)

    def covered_ids_in(
        self, conn: Connection, tenant_id: str, hold: Hold, among: Sequence[str] | None = None
    ) -> set[str]:
        """The ids of the tenant's messages a thread or address hold covers (the frozen list
        for a query hold), restricted to ``among`` when given."""
        if hold.kind == "query":
            found = self.frozen_ids_in(conn, hold.id)
            return found if among is None else found & set(among)
        clause = (
            m.thread_id == hold.thread_id
            if hold.kind == "thread"
            else _address_clause(hold.address or "")
        )
        query = select(m.id).where(m.tenant_id == tenant_id, clause)
        if among is not None:
            query = query.where(m.id.in_(list(among)))
        return set(conn.execute(query.order_by(m.archived_at, m.id)).scalars())

    # -- messages ------------------------------------------------------------------------------

    def message_rows_in(self, conn: Connection, ids: Sequence[str]) -> list[Any]:
        """The rows of ``ids``, oldest first (an export's order)."""
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows += conn.execute(select(archive_messages).where(m.id.in_(chunk))).all()
        return sorted(rows, key=lambda r: (as_utc(r.archived_at), r.id))

    def thread_message_ids_in(self, conn: Connection, tenant_id: str, thread_id: str) -> list[str]:
        return list(
            conn.execute(
                select(m.id)
                .where(m.tenant_id == tenant_id, m.thread_id == thread_id)
                .order_by(m.archived_at, m.id)
            ).scalars()
        )

    # -- retention -----------------------------------------------------------------------------

    def tenants_with_retention(self) -> list[tuple[str, int]]:
        s = archive_settings.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.tenant_id, s.retention_days).where(s.retention_days.is_not(None))
            ).all()
        return [(r.tenant_id, int(r.retention_days)) for r in rows]

    def expired_in(
        self,
        conn: Connection,
        tenant_id: str,
        cutoff: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Any]:
        """Unpurged messages archived before ``cutoff``, oldest first, after the keyset
        ``after`` (held messages stay unpurged: the next batch starts past them)."""
        query = select(m.id, m.sha256, m.size, m.record_id, m.archived_at).where(
            m.tenant_id == tenant_id, m.purged_at.is_(None), m.archived_at < cutoff
        )
        if after is not None:
            query = query.where(tuple_(m.archived_at, m.id) > tuple_(*after))
        return list(conn.execute(query.order_by(m.archived_at, m.id).limit(limit)).all())

    def mark_purged_in(
        self, conn: Connection, message_id: str, now: datetime, record_id: str
    ) -> bool:
        """Compare-and-set on ``purged_at`` (another purger may have been first)."""
        done = conn.execute(
            update(archive_messages)
            .where(m.id == message_id, m.purged_at.is_(None))
            .values(purged_at=now, purge_record_id=record_id)
        ).rowcount
        return bool(done)

    def blob_still_used_in(self, conn: Connection, sha256: str) -> bool:
        """Whether any unpurged message of any tenant has these bytes (the archive's blob
        namespace is shared by every tenant: the same bytes are one file)."""
        found = conn.execute(
            select(m.id).where(and_(m.sha256 == sha256, m.purged_at.is_(None))).limit(1)
        ).first()
        return found is not None

    # -- exports -------------------------------------------------------------------------------

    def insert_export_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_exports).values(**row))

    def export(self, tenant_id: str, export_id: str) -> Any:
        e = archive_exports.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(archive_exports).where(e.id == export_id, e.tenant_id == tenant_id)
            ).first()

    def stale_exports_in(self, conn: Connection, before: datetime, limit: int) -> list[Any]:
        e = archive_exports.c
        return list(
            conn.execute(
                select(e.id, e.sha256)
                .where(e.created_at < before, e.removed_at.is_(None))
                .order_by(e.created_at, e.id)
                .limit(limit)
            ).all()
        )

    def mark_export_removed_in(self, conn: Connection, export_id: str, now: datetime) -> bool:
        e = archive_exports.c
        done = conn.execute(
            update(archive_exports)
            .where(e.id == export_id, e.removed_at.is_(None))
            .values(removed_at=now)
        ).rowcount
        return bool(done)
