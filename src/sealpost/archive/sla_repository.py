"""All SQL of the archive's unanswered-mail alerts: policies, the alerts raised, the facts of a
thread its clock needs.  Methods ending in ``_in`` run in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.archive.model import Thread, Viewer
from sealpost.archive.repository import thread_from_row, visible_threads
from sealpost.archive.sla_model import SlaPolicy
from sealpost.archive.tables import (
    archive_agents,
    archive_messages,
    archive_sla_alerts,
    archive_sla_policies,
    archive_sla_scopes,
    archive_team_members,
    archive_threads,
)
from sealpost.deadlines.hours import parse_spans
from sealpost.ledger.repository import as_utc

LATE_READ_BOUND = timedelta(days=7)
"""How far before its archiving a message's ``Date`` may start its clock."""

p = archive_sla_policies.c
sc = archive_sla_scopes.c
_WITH_SCOPE = select(archive_sla_policies, sc.first_created_at).select_from(
    archive_sla_policies.outerjoin(
        archive_sla_scopes, (sc.tenant_id == p.tenant_id) & (sc.scope == p.scope)
    )
)
al = archive_sla_alerts.c
t = archive_threads.c
m = archive_messages.c


def policy_from_row(row: Any) -> SlaPolicy:
    return SlaPolicy(
        id=row.id,
        tenant_id=row.tenant_id,
        team_id=row.team_id,
        name=row.name,
        first_reply_minutes=int(row.first_reply_minutes),
        reply_minutes=int(row.reply_minutes),
        warning_percent=row.warning_percent,
        warning_before_minutes=row.warning_before_minutes,
        escalate_after_minutes=row.escalate_after_minutes,
        reassign_after_minutes=row.reassign_after_minutes,
        reassign_to=row.reassign_to,
        calendar=row.calendar,
        time_zone=row.time_zone,
        hours=parse_spans(json.loads(row.hours)),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        counts_from=as_utc(row.first_created_at) if row.first_created_at is not None else None,
    )


class SlaRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- policies ------------------------------------------------------------------------------

    def insert_policy_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_sla_policies).values(**row))

    def update_policy_in(self, conn: Connection, policy_id: str, **values: Any) -> None:
        conn.execute(update(archive_sla_policies).where(p.id == policy_id).values(**values))

    def scope_started_in(self, conn: Connection, tenant_id: str, scope: str, now: datetime) -> None:
        """Note the scope's first policy (kept for good: see ``archive_sla_scopes``)."""
        found = conn.execute(
            select(sc.first_created_at).where(sc.tenant_id == tenant_id, sc.scope == scope)
        ).first()
        if found is None:
            conn.execute(
                insert(archive_sla_scopes).values(
                    tenant_id=tenant_id, scope=scope, first_created_at=now
                )
            )

    def delete_policy_in(self, conn: Connection, tenant_id: str, policy_id: str) -> bool:
        done = conn.execute(
            delete(archive_sla_policies).where(p.id == policy_id, p.tenant_id == tenant_id)
        ).rowcount
        return bool(done)

    def policy_in(self, conn: Connection, tenant_id: str, policy_id: str) -> SlaPolicy | None:
        row = conn.execute(_WITH_SCOPE.where(p.id == policy_id, p.tenant_id == tenant_id)).first()
        return None if row is None else policy_from_row(row)

    def policy(self, tenant_id: str, policy_id: str) -> SlaPolicy | None:
        with self.engine.connect() as conn:
            return self.policy_in(conn, tenant_id, policy_id)

    def policies(self, tenant_id: str | None = None) -> list[SlaPolicy]:
        """A tenant's policies, or every tenant's (the loop's round)."""
        query = _WITH_SCOPE.order_by(p.tenant_id, p.scope)
        if tenant_id is not None:
            query = query.where(p.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return [policy_from_row(r) for r in conn.execute(query)]

    # -- threads and their clocks --------------------------------------------------------------

    def waiting_threads(self, tenant_id: str, viewer: Viewer | None = None) -> list[Thread]:
        """The tenant's threads waiting on the company (the customer wrote last)."""
        query = select(archive_threads).where(t.tenant_id == tenant_id, t.waiting_on == "us")
        if viewer is not None:
            query = query.where(visible_threads(viewer))
        with self.engine.connect() as conn:
            return [thread_from_row(r) for r in conn.execute(query.order_by(t.last_inbound_at))]

    def clock_start_in(self, conn: Connection, thread: Thread) -> datetime | None:
        """When the customer's unanswered mail began: the first inbound message archived
        after the company's last reply (the thread's first, before any reply), from its
        ``Date`` (RFC 5322 §3.6.1: when the customer sent it) when that is earlier than its
        archiving — mail read late (a mailbox failing for two days) counts from when it was
        sent — but never more than :data:`LATE_READ_BOUND` before its archiving (a forged old
        ``Date`` cannot fake an instant breach) nor before the company's last reply."""
        inbound = [m.thread_id == thread.id, m.direction == "inbound"]
        if thread.last_outbound_at is not None:
            inbound.append(m.archived_at > thread.last_outbound_at)
        first = conn.execute(select(func.min(m.archived_at)).where(*inbound)).scalar()
        if first is None:
            return None
        first = as_utc(first)
        # only a message archived within the bound after the first can have begun earlier
        rows = conn.execute(
            select(m.archived_at, m.sent_at)
            .where(*inbound, m.archived_at <= first + LATE_READ_BOUND)
            .order_by(m.archived_at)
            .limit(1000)
        ).all()
        start = first
        for row in rows:
            archived = as_utc(row.archived_at)
            sent = as_utc(row.sent_at) if row.sent_at is not None else archived
            start = min(start, max(min(sent, archived), archived - LATE_READ_BOUND))
        if thread.last_outbound_at is not None:
            start = max(start, thread.last_outbound_at)
        return start

    def alerts_in(self, conn: Connection, thread_id: str, clock_start: datetime) -> dict[str, Any]:
        rows = conn.execute(
            select(archive_sla_alerts).where(
                al.thread_id == thread_id, al.clock_start == clock_start
            )
        ).all()
        return {r.kind: r for r in rows}

    def alerts(self, thread_id: str, clock_start: datetime) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return self.alerts_in(conn, thread_id, clock_start)

    def insert_alert_in(self, conn: Connection, row: dict[str, Any]) -> bool:
        """Record an alert; False when it was already raised (by another worker)."""
        try:
            with conn.begin_nested():
                conn.execute(insert(archive_sla_alerts).values(id=str(uuid.uuid4()), **row))
        except IntegrityError:
            return False
        return True

    # -- who hears of it -----------------------------------------------------------------------

    def supervisors_in(self, conn: Connection, tenant_id: str) -> list[str]:
        a = archive_agents.c
        return list(
            conn.execute(
                select(a.id)
                .where(a.tenant_id == tenant_id, a.role == "supervisor", a.disabled_at.is_(None))
                .order_by(a.id)
            ).scalars()
        )

    def team_agents_in(self, conn: Connection, tenant_id: str, team_id: str) -> list[str]:
        a = archive_agents.c
        tm = archive_team_members.c
        return list(
            conn.execute(
                select(a.id)
                .join(archive_team_members, tm.agent_id == a.id)
                .where(tm.team_id == team_id, a.tenant_id == tenant_id, a.disabled_at.is_(None))
                .order_by(a.id)
            ).scalars()
        )
