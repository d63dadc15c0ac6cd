"""All SQL of reminder sequences.

Due steps are claimed like SMS and email delivery (a lease per step in one ``UPDATE ...
RETURNING``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).  The
enrolment row is the serialisation point of "never a step after a stop": the send guard
locks it (``FOR UPDATE``) in the message's commit, and every stop updates it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.ledger.repository import as_utc
from sealpost.sequences.model import (
    ACTIVE,
    CANCELLED_STEP,
    SCHEDULED,
    Enrolment,
    Person,
    StepState,
)
from sealpost.sequences.tables import (
    sequence_enrolments,
    sequence_external_ids,
    sequence_settings,
    sequence_steps,
    sequences,
)


def _t(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _enrolment(row: Any) -> Enrolment:
    person = json.loads(row.person)
    return Enrolment(
        id=row.id,
        tenant_id=row.tenant_id,
        sequence_id=row.sequence_id,
        variant=row.variant,
        status=row.status,
        stop_cause=row.stop_cause,
        outcome=row.outcome,
        person=Person(person["name"], person.get("email"), person.get("phone")),
        language=row.language,
        time_zone=row.time_zone,
        variables=json.loads(row.variables),
        payment_token=row.payment_token,
        opt_out_token=row.opt_out_token,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        stopped_at=_t(row.stopped_at),
    )


def _step(row: Any) -> StepState:
    return StepState(
        id=row.id,
        enrolment_id=row.enrolment_id,
        tenant_id=row.tenant_id,
        number=row.number,
        channel=row.channel,
        status=row.status,
        planned_at=as_utc(row.planned_at),
        due_at=_t(row.due_at),
        sent_at=_t(row.sent_at),
        message_type=row.message_type,
        message_id=row.message_id,
        attempts=row.attempts,
        error=row.error,
    )


class SequenceRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- definitions ----------------------------------------------------------------------

    def insert_sequence(self, row: dict[str, Any]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(insert(sequences), [row])

    def get_sequence(self, sequence_id: str, tenant_id: str | None = None) -> Any:
        query = select(sequences).where(sequences.c.id == sequence_id)
        if tenant_id is not None:
            query = query.where(sequences.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return conn.execute(query).first()

    def list_sequences(self, tenant_id: str, limit: int = 100) -> list[Any]:
        c = sequences.c
        query = (
            select(sequences)
            .where(c.tenant_id == tenant_id)
            .order_by(c.created_at.desc(), c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    # -- the tenant's settings ---------------------------------------------------------------

    def payment_link_base(self, tenant_id: str) -> str | None:
        c = sequence_settings.c
        query = select(c.payment_link_base).where(c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def set_payment_link_base(self, tenant_id: str, base: str | None, now: datetime) -> None:
        c = sequence_settings.c
        with write_transaction(self.engine) as conn:
            changed = conn.execute(
                update(sequence_settings)
                .where(c.tenant_id == tenant_id)
                .values(payment_link_base=base, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(sequence_settings).values(
                        tenant_id=tenant_id, payment_link_base=base, updated_at=now
                    )
                )

    # -- enrolments -------------------------------------------------------------------------

    @staticmethod
    def insert_enrolments_in(
        conn: Connection,
        enrolments: Sequence[dict[str, Any]],
        steps: Sequence[dict[str, Any]],
        external: Sequence[dict[str, Any]],
    ) -> None:
        if enrolments:
            conn.execute(insert(sequence_enrolments), list(enrolments))
        if steps:
            conn.execute(insert(sequence_steps), list(steps))
        if external:
            conn.execute(insert(sequence_external_ids), list(external))

    def get_enrolment(self, enrolment_id: str, tenant_id: str | None = None) -> Enrolment | None:
        query = select(sequence_enrolments).where(sequence_enrolments.c.id == enrolment_id)
        if tenant_id is not None:
            query = query.where(sequence_enrolments.c.tenant_id == tenant_id)
        x = sequence_external_ids.c
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            ids = {
                r.kind: r.external_id
                for r in conn.execute(
                    select(x.kind, x.external_id).where(x.enrolment_id == enrolment_id)
                )
            }
        found = _enrolment(row)
        return Enrolment(**{**found.__dict__, "external_ids": ids})

    def by_opt_out_token(self, token: str) -> Enrolment | None:
        query = select(sequence_enrolments).where(sequence_enrolments.c.opt_out_token == token)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _enrolment(row)

    @staticmethod
    def lock_enrolment_in(conn: Connection, enrolment_id: str) -> Enrolment | None:
        """The enrolment row, locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
        SQLite's ``BEGIN IMMEDIATE`` already holds the database's write lock)."""
        query = select(sequence_enrolments).where(sequence_enrolments.c.id == enrolment_id)
        if not is_sqlite(conn):
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else _enrolment(row)

    @staticmethod
    def set_status_in(
        conn: Connection,
        enrolment_id: str,
        status: str,
        now: datetime,
        *,
        cause: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if cause is not None:
            values.update(stop_cause=cause, stopped_at=now)
        conn.execute(
            update(sequence_enrolments)
            .where(sequence_enrolments.c.id == enrolment_id)
            .values(**values)
        )

    def by_external_id(self, tenant_id: str, kind: str, external_id: str) -> list[str]:
        """The tenant's enrolments naming ``external_id`` (another tenant's never: its
        resource's outcome is none of this tenant's business)."""
        x, e = sequence_external_ids.c, sequence_enrolments.c
        query = (
            select(x.enrolment_id)
            .join(sequence_enrolments, e.id == x.enrolment_id)
            .where(x.kind == kind, x.external_id == external_id, e.tenant_id == tenant_id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    # -- steps ----------------------------------------------------------------------------

    def steps(self, enrolment_id: str) -> list[StepState]:
        s = sequence_steps.c
        query = select(sequence_steps).where(s.enrolment_id == enrolment_id).order_by(s.number)
        with self.engine.connect() as conn:
            return [_step(r) for r in conn.execute(query)]

    @staticmethod
    def steps_in(conn: Connection, enrolment_id: str) -> list[StepState]:
        s = sequence_steps.c
        query = select(sequence_steps).where(s.enrolment_id == enrolment_id).order_by(s.number)
        return [_step(r) for r in conn.execute(query)]

    @staticmethod
    def enrolment_of_step_in(conn: Connection, step_id: str) -> str | None:
        c = sequence_steps.c
        found = conn.execute(select(c.enrolment_id).where(c.id == step_id)).scalar()
        return None if found is None else str(found)

    def by_message(self, message_id: str) -> StepState | None:
        query = select(sequence_steps).where(sequence_steps.c.message_id == message_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _step(row)

    @staticmethod
    def insert_step_in(conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(sequence_steps), [row])

    def claim_due(
        self, owner: str, *, limit: int, lease_seconds: float, now: datetime
    ) -> list[StepState]:
        """Lease up to ``limit`` scheduled steps whose time has come."""
        c = sequence_steps.c
        due = (
            select(c.id)
            .where(c.status == SCHEDULED, c.due_at <= now)
            .where(or_(c.lease_until.is_(None), c.lease_until < now))
            .order_by(c.due_at)
            .limit(limit)
        )
        with write_transaction(self.engine) as conn:
            if not is_sqlite(conn):
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(
                update(sequence_steps)
                .where(c.id.in_(due))
                .values(
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=c.attempts + 1,
                )
                .returning(*sequence_steps.c)
            ).all()
        return sorted((_step(r) for r in rows), key=lambda s: (s.due_at or now, s.id))

    @staticmethod
    def mark_sent_in(
        conn: Connection,
        step_id: str,
        owner: str,
        message_type: str,
        message_id: str,
        now: datetime,
    ) -> bool:
        """Scheduled and still leased by ``owner`` → sent with the message's id."""
        c = sequence_steps.c
        return bool(
            conn.execute(
                update(sequence_steps)
                .where(c.id == step_id, c.status == SCHEDULED, c.lease_owner == owner)
                .values(
                    status="sent",
                    sent_at=now,
                    message_type=message_type,
                    message_id=message_id,
                    lease_owner=None,
                    lease_until=None,
                )
            ).rowcount
        )

    @staticmethod
    def set_step_in(conn: Connection, step_id: str, **values: Any) -> None:
        conn.execute(update(sequence_steps).where(sequence_steps.c.id == step_id).values(**values))

    @staticmethod
    def cancel_scheduled_in(conn: Connection, enrolment_id: str) -> int:
        c = sequence_steps.c
        return int(
            conn.execute(
                update(sequence_steps)
                .where(c.enrolment_id == enrolment_id, c.status == SCHEDULED)
                .values(status=CANCELLED_STEP, lease_owner=None, lease_until=None)
            ).rowcount
        )

    def release(self, step_id: str, owner: str, retry_at: datetime, error: str) -> None:
        c = sequence_steps.c
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(sequence_steps)
                .where(c.id == step_id, c.lease_owner == owner, c.status == SCHEDULED)
                .values(lease_owner=None, lease_until=None, due_at=retry_at, error=error[:500])
            )

    # -- outcomes ---------------------------------------------------------------------------

    def stats(self, sequence_id: str) -> dict[str, dict[str, int]]:
        """Per variant: enrolments by status and by stop cause."""
        e = sequence_enrolments.c
        query = (
            select(e.variant, e.status, e.stop_cause, func.count())
            .where(e.sequence_id == sequence_id)
            .group_by(e.variant, e.status, e.stop_cause)
        )
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for variant, status, cause, count in conn.execute(query):
                counts = out.setdefault(variant, {})
                counts[f"status:{status}"] = counts.get(f"status:{status}", 0) + count
                if cause is not None:
                    counts[f"cause:{cause}"] = counts.get(f"cause:{cause}", 0) + count
        return out

    def active_scheduled(self, enrolment_id: str) -> bool:
        c = sequence_steps.c
        query = select(func.count()).where(
            and_(c.enrolment_id == enrolment_id, c.status == SCHEDULED)
        )
        with self.engine.connect() as conn:
            return bool(conn.execute(query).scalar())


__all__ = ["ACTIVE", "SequenceRepository"]
