"""All SQL of legal deadlines: a tenant's calendar days, and the terms with their records.

Every change of a term writes its evidence record (DeadlineSet, DeadlineApproaching,
DeadlinePassed) and its event in the same transaction (``outbox.append_evidence``); a change of
status is compare-and-set on the status it read, so two processes never seal it twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.db.engine import reading, write_transaction
from sealpost.deadlines.calendars import ExtraDay
from sealpost.deadlines.model import Deadline
from sealpost.deadlines.ports import SubjectEvidence
from sealpost.deadlines.tables import calendar_days, deadlines
from sealpost.events.outbox import append_evidence
from sealpost.events.registry import NewEvent
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import as_utc

_COLUMNS = [
    deadlines.c[name]
    for name in (
        "id",
        "tenant_id",
        "subject_type",
        "subject_id",
        "rule",
        "trigger_record_id",
        "trigger_at",
        "ends_on",
        "ends_at",
        "approaching_at",
        "time_zone",
        "calendar_name",
        "data_version",
        "computation",
        "status",
        "record_id",
        "created_at",
        "updated_at",
    )
]


def _deadline(row: Any) -> Deadline:
    return Deadline(
        id=row.id,
        tenant_id=row.tenant_id,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        rule=json.loads(row.rule),
        trigger_record_id=row.trigger_record_id,
        trigger_at=as_utc(row.trigger_at),
        ends_on=row.ends_on,
        ends_at=as_utc(row.ends_at),
        approaching_at=as_utc(row.approaching_at),
        time_zone=row.time_zone,
        calendar_name=row.calendar_name,
        data_version=row.data_version,
        computation=json.loads(row.computation),
        status=row.status,
        record_id=row.record_id,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class DeadlineRepository:
    def __init__(self, engine: Engine, subjects: SubjectEvidence | None = None) -> None:
        self.engine = engine
        self.subjects = subjects

    # -- a tenant's own days ------------------------------------------------------------------

    def days(self, tenant_id: str, calendar: str) -> dict[date, ExtraDay]:
        c = calendar_days.c
        query = (
            select(c.day, c.name, c.kind)
            .where(c.tenant_id == tenant_id, c.calendar == calendar)
            .order_by(c.day)
        )
        with self.engine.connect() as conn:
            return {r.day: ExtraDay(r.day, r.name, r.kind) for r in conn.execute(query)}

    def replace_days(self, tenant_id: str, calendar: str, days: Sequence[ExtraDay]) -> None:
        """The tenant's days on ``calendar`` become exactly ``days`` (one transaction)."""
        c = calendar_days.c
        with write_transaction(self.engine) as conn:
            conn.execute(
                delete(calendar_days).where(c.tenant_id == tenant_id, c.calendar == calendar)
            )
            if days:
                conn.execute(
                    insert(calendar_days),
                    [
                        {
                            "tenant_id": tenant_id,
                            "calendar": calendar,
                            "day": d.day,
                            "name": d.name,
                            "kind": d.kind,
                        }
                        for d in days
                    ],
                )

    # -- terms --------------------------------------------------------------------------------

    def add(self, deadline: Deadline, record: EvidenceRecord) -> bool:
        """Store a new term with its DeadlineSet record; False (nothing written) when the
        subject already has one (a second trigger, or another follower got there first)."""
        d = deadlines.c
        row = {
            "id": deadline.id,
            "tenant_id": deadline.tenant_id,
            "subject_type": deadline.subject_type,
            "subject_id": deadline.subject_id,
            "rule": json.dumps(dict(deadline.rule), sort_keys=True),
            "trigger_record_id": deadline.trigger_record_id,
            "trigger_at": deadline.trigger_at,
            "ends_on": deadline.ends_on,
            "ends_at": deadline.ends_at,
            "approaching_at": deadline.approaching_at,
            "time_zone": deadline.time_zone,
            "calendar_name": deadline.calendar_name,
            "data_version": deadline.data_version,
            "computation": json.dumps(dict(deadline.computation), sort_keys=True),
            "status": deadline.status,
            "record_id": deadline.record_id,
            "created_at": deadline.created_at,
            "updated_at": deadline.updated_at,
        }
        try:
            with write_transaction(self.engine) as conn:
                exists = conn.execute(
                    select(d.id).where(
                        d.subject_type == deadline.subject_type,
                        d.subject_id == deadline.subject_id,
                    )
                ).first()
                if exists is not None:
                    return False
                conn.execute(insert(deadlines).values(**row))
                append_evidence(conn, [record])
                if self.subjects is not None:
                    self.subjects.recorded_in(
                        conn, deadline.subject_type, deadline.subject_id, deadline.created_at
                    )
        except IntegrityError:  # a concurrent follower inserted it first
            return False
        return True

    def for_subject(self, tenant_id: str, subject_type: str, subject_id: str) -> list[Deadline]:
        d = deadlines.c
        query = select(*_COLUMNS).where(
            d.tenant_id == tenant_id, d.subject_type == subject_type, d.subject_id == subject_id
        )
        with reading(self.engine) as conn:
            return [_deadline(r) for r in conn.execute(query)]

    def get(self, deadline_id: str) -> Deadline | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_COLUMNS).where(deadlines.c.id == deadline_id)).first()
        return None if row is None else _deadline(row)

    def due(self, now: datetime, limit: int) -> list[Deadline]:
        """Terms whose clock has something to say: approaching or passed, oldest first."""
        d = deadlines.c
        query = (
            select(*_COLUMNS)
            .where(
                ((d.status == "running") & (d.approaching_at <= now))
                | ((d.status.in_(("running", "approaching"))) & (d.ends_at < now))
            )
            .order_by(d.ends_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_deadline(r) for r in conn.execute(query)]

    def move(
        self,
        deadline: Deadline,
        status: str,
        now: datetime,
        record: EvidenceRecord,
        events: Sequence[NewEvent],
    ) -> bool:
        """Compare-and-set the status from the one read, with the record and its event."""
        d = deadlines.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(deadlines)
                .where(d.id == deadline.id, d.status == deadline.status)
                .values(status=status, updated_at=now)
            ).rowcount
            if not moved:
                return False
            append_evidence(conn, [record], events)
            if self.subjects is not None:
                self.subjects.recorded_in(conn, deadline.subject_type, deadline.subject_id, now)
        return True
