"""Fan-out: the webhook deliveries an event owes, created and removed in the caller's transaction.

A *webhook delivery* is created when the dispatcher positions an event (``fan_out_in``, in the same
transaction), for every endpoint of the tenant whose filter matches, enabled or not: a
disabled endpoint keeps its backlog and gets it, in order, once enabled again (``resume_in``,
in the transaction that enables it).  Deleting an endpoint takes its backlog and its log with
it (``purge_in``, in the transaction that deletes it).  These are functions on a
``Connection`` rather than methods of a repository with its own engine: an event is positioned
together with its deliveries, and an endpoint changes together with its backlog, in one commit
or not at all.

A replay (``WebhookReplay``) creates new deliveries of events already positioned, with the
same event ids, hence the same ``webhook-id``: receivers deduplicating on it stay correct.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from sealpost.db.engine import write_transaction
from sealpost.events.outbox import PositionedEvent
from sealpost.events.registry import matches
from sealpost.events.tables import webhook_attempts, webhook_deliveries, webhook_endpoints
from sealpost.events.webhooks.deliveries import EVENT, PENDING, REPLAY


def fan_out_in(
    conn: Connection,
    events: Sequence[PositionedEvent],
    *,
    now: datetime,
    retry_window: timedelta,
    kind: str = EVENT,
    endpoint_id: str | None = None,
) -> int:
    """One pending delivery per (event, matching endpoint); returns how many."""
    if not events:
        return 0
    e = webhook_endpoints.c
    query = select(e.id, e.tenant_id, e.event_types).where(
        e.tenant_id.in_({ev.tenant_id for ev in events})
    )
    if endpoint_id is not None:
        query = query.where(e.id == endpoint_id)
    by_tenant: dict[str, list[tuple[str, list[str]]]] = {}
    for row in conn.execute(query):
        by_tenant.setdefault(row.tenant_id, []).append((row.id, json.loads(row.event_types)))
    if not by_tenant:
        return 0
    rows = [
        {
            "id": str(uuid.uuid4()),
            "endpoint_id": ep_id,
            "event_id": ev.id,
            "position": ev.position,
            "subject": ev.subject,
            "kind": kind,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "deadline_at": now + retry_window,
            "created_at": now,
            "updated_at": now,
        }
        for ev in events
        for ep_id, patterns in by_tenant.get(ev.tenant_id, [])
        if endpoint_id is not None or matches(patterns, ev.type)
    ]
    if rows:
        conn.execute(insert(webhook_deliveries), rows)
    return len(rows)


def resume_in(
    conn: Connection, endpoint_id: str, *, now: datetime, retry_window: timedelta
) -> None:
    """An endpoint enabled again: its paused backlog is due now, with a fresh window."""
    d = webhook_deliveries.c
    conn.execute(
        update(webhook_deliveries)
        .where(d.endpoint_id == endpoint_id, d.state == PENDING)
        .values(next_attempt_at=now, deadline_at=now + retry_window, updated_at=now)
    )


def purge_in(conn: Connection, endpoint_id: str) -> None:
    """An endpoint deleted: its backlog and its log go with it."""
    d = webhook_deliveries.c
    ids = select(d.id).where(d.endpoint_id == endpoint_id).scalar_subquery()
    conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(ids)))
    conn.execute(delete(webhook_deliveries).where(d.endpoint_id == endpoint_id))


class WebhookReplay:
    """Replays asked for through the API, each in a transaction of its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replay(
        self,
        events: Sequence[PositionedEvent],
        *,
        endpoint_id: str | None,
        retry_window: timedelta,
    ) -> int:
        """New deliveries of already positioned events (same event ids, so same webhook-id)."""
        with write_transaction(self.engine) as conn:
            return fan_out_in(
                conn,
                events,
                now=datetime.now(UTC),
                retry_window=retry_window,
                kind=REPLAY,
                endpoint_id=endpoint_id,
            )
