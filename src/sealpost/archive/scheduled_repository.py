"""All SQL of scheduled sends: insert, lease what is due (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, the writer's ``BEGIN IMMEDIATE`` on SQLite, as the sequences' steps), lock one
for its guard or its cancel, release, list.  Methods ending in ``_in`` run in the caller's
transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, tuple_, update

from sealpost.archive.model import Viewer
from sealpost.archive.scheduled_model import SCHEDULED, ScheduledSend
from sealpost.archive.tables import archive_scheduled_sends
from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.ledger.repository import as_utc, as_utc_or_none

s = archive_scheduled_sends.c


def send_from_row(row: Any) -> ScheduledSend:
    return ScheduledSend(
        id=row.id,
        tenant_id=row.tenant_id,
        created_by_agent_id=row.created_by_agent_id,
        sender=row.sender,
        sender_name=row.sender_name,
        to=row.to_address,
        subject=row.subject,
        text=row.text,
        html=row.html,
        certified=bool(row.certified),
        pickup=bool(row.pickup),
        requested_at=as_utc_or_none(row.requested_at),
        send_at=as_utc(row.send_at),
        hold=row.hold,
        state=row.state,
        attempts=int(row.attempts),
        communication_id=row.communication_id,
        error=row.error,
        created_at=as_utc(row.created_at),
        sent_at=as_utc_or_none(row.sent_at),
        cancelled_at=as_utc_or_none(row.cancelled_at),
        lease_owner=row.lease_owner,
    )


def visible_sends(viewer: Viewer) -> Any:
    """The administrator, supervisors and auditors see the tenant's; an agent its own."""
    clause = s.tenant_id == viewer.tenant_id
    if viewer.agent is not None and not viewer.sees_everything:
        clause = clause & (s.created_by_agent_id == viewer.agent.id)
    return clause


class ScheduledRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_scheduled_sends).values(**row))

    def get(self, viewer: Viewer, send_id: str) -> ScheduledSend | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(archive_scheduled_sends).where(s.id == send_id, visible_sends(viewer))
            ).first()
        return None if row is None else send_from_row(row)

    def by_id(self, send_id: str) -> ScheduledSend | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(archive_scheduled_sends).where(s.id == send_id)).first()
        return None if row is None else send_from_row(row)

    def page(
        self,
        viewer: Viewer,
        *,
        state: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[ScheduledSend]:
        query = select(archive_scheduled_sends).where(visible_sends(viewer))
        if state is not None:
            query = query.where(s.state == state)
        if after is not None:
            query = query.where(tuple_(s.created_at, s.id) < tuple_(*after))
        query = query.order_by(s.created_at.desc(), s.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [send_from_row(r) for r in conn.execute(query)]

    def lock_in(self, conn: Connection, send_id: str) -> ScheduledSend | None:
        query = select(archive_scheduled_sends).where(s.id == send_id)
        if not is_sqlite(conn):
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else send_from_row(row)

    def set_in(self, conn: Connection, send_id: str, **values: Any) -> None:
        conn.execute(update(archive_scheduled_sends).where(s.id == send_id).values(**values))

    def claim_due(
        self, owner: str, *, limit: int, lease_seconds: float, now: datetime
    ) -> list[ScheduledSend]:
        """Lease up to ``limit`` scheduled sends whose time has come (an expired lease, left
        by a worker that died between its claim and its send, is taken over)."""
        due = (
            select(s.id)
            .where(s.state == SCHEDULED, s.send_at <= now)
            .where(or_(s.lease_until.is_(None), s.lease_until < now))
            .order_by(s.send_at)
            .limit(limit)
        )
        with write_transaction(self.engine) as conn:
            if not is_sqlite(conn):
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(
                update(archive_scheduled_sends)
                .where(s.id.in_(due))
                .values(
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=s.attempts + 1,
                )
                .returning(*archive_scheduled_sends.c)
            ).all()
        return sorted((send_from_row(r) for r in rows), key=lambda x: (x.send_at, x.id))

    def release(self, send_id: str, owner: str, retry_at: datetime, error: str) -> None:
        """Give a leased send back, to be tried again at ``retry_at`` (its ``send_at``, the
        time asked for, stays)."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(archive_scheduled_sends)
                .where(s.id == send_id, s.lease_owner == owner, s.state == SCHEDULED)
                .values(lease_owner=None, lease_until=retry_at, error=error[:500])
            )
