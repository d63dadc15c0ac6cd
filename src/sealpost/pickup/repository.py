"""All SQL of registered pickup.

Every state change is a compare-and-set (``UPDATE ... WHERE state IN (...)``) in the caller's
transaction, together with its evidence records (``outbox.append_evidence``): two clicks, two
tabs or the expiry loop racing a click never both win.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from sealpost.db.engine import is_sqlite, reading, write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import as_utc_or_none
from sealpost.pickup.model import NEW, NOTIFIED, Pickup
from sealpost.pickup.tables import pickup_settings, pickups

_FIELDS = [f.name for f in fields(Pickup)]
_TIMES = {f for f in _FIELDS if f.endswith("_at")}


def _pickup(row: Any) -> Pickup:
    values = {name: getattr(row, name) for name in _FIELDS}
    for name in _TIMES:
        values[name] = as_utc_or_none(values[name])
    values["hide_sender"] = bool(values["hide_sender"])
    return Pickup(**values)


class PickupRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    @staticmethod
    def insert_in(conn: Connection, values: dict[str, Any]) -> None:
        conn.execute(insert(pickups).values(**values))

    @staticmethod
    def add_evidence_in(conn: Connection, records: Sequence[EvidenceRecord]) -> None:
        append_evidence(conn, records)

    def get(self, communication_id: str, tenant_id: str | None = None) -> Pickup | None:
        with reading(self.engine) as conn:
            return self.get_in(conn, communication_id, tenant_id)

    @staticmethod
    def get_in(
        conn: Connection, communication_id: str, tenant_id: str | None = None, *, lock: bool = False
    ) -> Pickup | None:
        query = select(pickups).where(pickups.c.communication_id == communication_id)
        if tenant_id is not None:
            query = query.where(pickups.c.tenant_id == tenant_id)
        if lock and not is_sqlite(conn):
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else _pickup(row)

    @staticmethod
    def set_in(
        conn: Connection,
        communication_id: str,
        *,
        expect_states: Sequence[str] | None = None,
        where_null: str | None = None,
        where_equal: dict[str, Any] | None = None,
        **values: Any,
    ) -> bool:
        """Set ``values`` if the pickup is in one of ``expect_states`` (``where_null`` still
        empty, ``where_equal`` columns unchanged); False when another step won the race."""
        c = pickups.c
        query = update(pickups).where(c.communication_id == communication_id)
        if expect_states is not None:
            query = query.where(c.state.in_(list(expect_states)))
        if where_null is not None:
            query = query.where(c[where_null].is_(None))
        for name, value in (where_equal or {}).items():
            query = query.where(c[name].is_(None) if value is None else c[name] == value)
        return bool(conn.execute(query.values(**values)).rowcount)

    @staticmethod
    def take_attempt_in(conn: Connection, communication_id: str, limit: int) -> int | None:
        """Count one challenge answer atomically; None when none is left."""
        c = pickups.c
        taken = conn.execute(
            update(pickups)
            .where(c.communication_id == communication_id, c.attempts < limit)
            .values(attempts=c.attempts + 1)
        ).rowcount
        if not taken:
            return None
        return int(
            conn.execute(
                select(c.attempts).where(c.communication_id == communication_id)
            ).scalar_one()
        )

    def _select(self, *where: Any, limit: int) -> list[Pickup]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(pickups).where(*where).limit(limit))
            return [_pickup(r) for r in rows]

    def due_notices(self, now: datetime, limit: int = 100) -> list[Pickup]:
        c = pickups.c
        return self._select(c.state == NEW, c.notice_due_at <= now, limit=limit)

    def notices_in_flight(self, limit: int = 200) -> list[Pickup]:
        """Notices sent (by email or SMS) whose own delivery is not known yet
        (NotificationDelivered pending)."""
        c = pickups.c
        return self._select(
            or_(c.notice_status == "sent", c.notice_sms_status == "sent"), limit=limit
        )

    def due_reminders(self, now: datetime, limit: int = 100) -> list[Pickup]:
        c = pickups.c
        return self._select(
            c.state == NOTIFIED,
            c.identified_at.is_(None),
            c.next_reminder_at <= now,
            limit=limit,
        )

    def due_expiry(self, now: datetime, limit: int = 100) -> list[Pickup]:
        c = pickups.c
        return self._select(c.state == NOTIFIED, c.expires_at <= now, limit=limit)

    # -- tenant defaults -------------------------------------------------------------------

    def settings(self, tenant_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(pickup_settings).where(pickup_settings.c.tenant_id == tenant_id)
            ).first()
        if row is None:
            return None
        return {
            "delivery": row.delivery,
            "identification": row.identification,
            "consent": row.consent,
            "policy": row.policy,
            "hide_sender": bool(row.hide_sender),
        }

    def put_settings(self, tenant_id: str, values: dict[str, Any], now: datetime) -> None:
        values = {**values, "hide_sender": int(bool(values.get("hide_sender", False)))}
        with self.transaction() as conn:
            done = conn.execute(
                update(pickup_settings)
                .where(pickup_settings.c.tenant_id == tenant_id)
                .values(**values, updated_at=now)
            ).rowcount
            if not done:
                conn.execute(
                    insert(pickup_settings).values(tenant_id=tenant_id, updated_at=now, **values)
                )
