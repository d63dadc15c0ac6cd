"""The claim queue the webhook sender works from: due deliveries, leased, finished, purged.

Deliveries are *claimed* like certified email (a lease; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and kept in order per subject and endpoint: a delivery waits while an earlier one
of the same subject to the same endpoint is still pending, so ``communications/X`` arrives
accepted → delivered → certificate_issued even across retries.  A disabled endpoint's
deliveries are not claimed: they wait, in order, until it is enabled again.  Finishing is
fenced on the lease owner, so a worker whose lease ran out cannot overwrite what its successor
recorded.  An endpoint that answers again after an outage (a minute or more without a 2xx)
has its whole backlog due at once, still in order per subject.  Finished deliveries are
purged with their attempts once past retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.events.outbox import add_events_in
from sealpost.events.registry import new_event
from sealpost.events.tables import (
    outbox_events,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from sealpost.events.webhooks.deliveries import (
    DELIVERED,
    FAILED,
    PENDING,
    AttemptResult,
    ClaimedWebhookDelivery,
    Clock,
    Outcome,
    attempt_row,
    secrets_of,
    utc_now,
)
from sealpost.ledger.repository import as_utc

_CANDIDATES_PER_SLOT = 4
OUTAGE = timedelta(minutes=1)
"""How long an endpoint must have failed, without one 2xx, for its recovery to make its whole
backlog due at once."""
"""Due deliveries looked at per free slot: some wait behind an earlier one of their subject."""


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_FINISH = (
    update(webhook_deliveries)
    .where(webhook_deliveries.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        attempts=bindparam("b_attempts"),
        next_attempt_at=bindparam("b_next"),
        lease_owner=None,
        lease_until=None,
        last_status=bindparam("b_status"),
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now"),
    )
)
"""One statement for a whole batch of outcomes (executemany), compiled once."""


class WebhookQueue:
    """What the webhook sender claims its work from and records its attempts into."""

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock

    def has_due(self) -> bool:
        """A cheap read, so that an idle sender never takes the write lock."""
        d = webhook_deliveries.c
        query = (
            select(d.id)
            .where(d.state == PENDING, d.next_attempt_at <= self.clock())
            .order_by(d.next_attempt_at)  # walks the partial index, stops at the first
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def claim_due(
        self, owner: str, *, limit: int, lease_seconds: float, now: datetime | None = None
    ) -> list[ClaimedWebhookDelivery]:
        """Reserve up to ``limit`` due deliveries, never one whose subject has an earlier
        delivery to the same endpoint still pending.

        Two index-friendly steps rather than one ``NOT EXISTS`` (whose plan, on a table just
        filled and not yet analysed, can turn quadratic): take the first due candidates in
        (time, position) order, then keep those that are the earliest pending delivery of
        their (endpoint, subject).
        """
        now = now or self.clock()
        d, e = webhook_deliveries.c, webhook_endpoints.c
        due = (
            select(d.id, d.endpoint_id, d.subject, d.position)
            .select_from(webhook_deliveries.join(webhook_endpoints, e.id == d.endpoint_id))
            .where(d.state == PENDING, d.next_attempt_at <= now, e.enabled == 1)
            .where(or_(d.lease_until.is_(None), d.lease_until < now))
            .order_by(d.next_attempt_at, d.position)
            .limit(limit * _CANDIDATES_PER_SLOT)
        )
        with write_transaction(self.engine) as conn:
            if not is_sqlite(conn):
                due = due.with_for_update(of=webhook_deliveries, skip_locked=True)
            candidates = conn.execute(due).all()
            if not candidates:
                return []
            keys = {(c.endpoint_id, c.subject) for c in candidates}
            first: dict[tuple[str, str], int] = {}
            for chunk in _chunks(sorted(keys), 200):
                earliest = conn.execute(
                    select(d.endpoint_id, d.subject, func.min(d.position))
                    .where(d.state == PENDING, tuple_(d.endpoint_id, d.subject).in_(chunk))
                    .group_by(d.endpoint_id, d.subject)
                )
                first.update({(r[0], r[1]): r[2] for r in earliest})
            ids = [c.id for c in candidates if first.get((c.endpoint_id, c.subject)) == c.position][
                :limit
            ]
            if not ids:
                return []
            # The endpoint is checked again as the lease is taken: on PostgreSQL each statement
            # reads what is committed when it starts, and the finish that failed a subject's
            # earliest delivery for good (making the next one "earliest" above) disables the
            # endpoint in that same commit.  Without this, the next delivery would be sent to
            # an endpoint just disabled, and fail at once (its window is over), not wait.
            ids = list(
                conn.execute(
                    update(webhook_deliveries)
                    .where(
                        d.id.in_(ids),
                        d.endpoint_id.in_(select(e.id).where(e.enabled == 1)),
                    )
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
                    .returning(d.id)
                ).scalars()
            )
            if not ids:
                return []
            o = outbox_events.c
            rows = conn.execute(
                select(
                    d.id,
                    d.endpoint_id,
                    d.event_id,
                    d.attempts,
                    d.deadline_at,
                    d.created_at,
                    d.position,
                    e.tenant_id,
                    e.url,
                    e.secret,
                    e.previous_secret,
                    e.previous_secret_until,
                    o.type,
                    o.payload,
                )
                .select_from(
                    webhook_deliveries.join(webhook_endpoints, e.id == d.endpoint_id).join(
                        outbox_events, o.id == d.event_id
                    )
                )
                .where(d.id.in_(ids))
                .order_by(d.position)
            ).all()
        return [
            ClaimedWebhookDelivery(
                id=r.id,
                endpoint_id=r.endpoint_id,
                tenant_id=r.tenant_id,
                url=r.url,
                event_id=r.event_id,
                event_type=r.type,
                payload=r.payload,
                attempts=r.attempts,
                deadline_at=as_utc(r.deadline_at),
                created_at=as_utc(r.created_at),
                secrets=secrets_of(r),
            )
            for r in rows
        ]

    def release(self, owner: str) -> int:
        """Free every delivery ``owner`` still holds (a sender shutting down): another
        sender takes it at once instead of after the lease."""
        d = webhook_deliveries.c
        with write_transaction(self.engine) as conn:
            return int(
                conn.execute(
                    update(webhook_deliveries)
                    .where(d.state == PENDING, d.lease_owner == owner)
                    .values(lease_owner=None, lease_until=None)
                ).rowcount
            )

    def finish(
        self,
        owner: str,
        outcomes: Sequence[Outcome],
        *,
        retry_window: timedelta,
    ) -> int:
        """Log each attempt and move its delivery on: delivered, retried at its
        ``next_attempt_at``, or failed (``None``).  One transaction for the whole batch (a
        sender commits what its concurrent requests gave, not one sync per request).

        *Persistent failure* disables the endpoint, with a ``webhook_endpoint.disabled`` event:
        a delivery used up its whole retry window and the endpoint answered nothing with a 2xx
        since that window began.  Returns how many were kept; an outcome whose lease was lost
        (another worker owns the delivery now) is dropped.
        """
        if not outcomes:
            return 0
        now = self.clock()
        d, e = webhook_deliveries.c, webhook_endpoints.c
        with write_transaction(self.engine) as conn:
            owned = select(d.id).where(
                d.id.in_([o.delivery.id for o in outcomes]),
                d.lease_owner == owner,
                d.state == PENDING,
            )
            if not is_sqlite(conn):
                owned = owned.with_for_update()
            still_mine = set(conn.execute(owned).scalars())
            kept = [o for o in outcomes if o.delivery.id in still_mine]
            if not kept:
                return 0
            conn.execute(
                _FINISH,
                [
                    {
                        "b_id": o.delivery.id,
                        "b_state": DELIVERED
                        if o.result.success
                        else (PENDING if o.next_attempt_at is not None else FAILED),
                        "b_attempts": o.delivery.attempts + 1,
                        "b_next": o.next_attempt_at or now,
                        "b_status": o.result.status_code,
                        "b_error": o.result.error,
                        "b_now": now,
                    }
                    for o in kept
                ],
            )
            conn.execute(
                insert(webhook_attempts),
                [
                    attempt_row(
                        o.delivery.id, o.delivery.endpoint_id, o.delivery.attempts + 1, o.result
                    )
                    for o in kept
                ],
            )
            succeeded = {o.delivery.endpoint_id for o in kept if o.result.success}
            if succeeded:
                self._resume_recovered(conn, succeeded, now)
                conn.execute(
                    update(webhook_endpoints)
                    .where(e.id.in_(succeeded))
                    .values(last_success_at=now, failing_since=None)
                )
            first_failure: dict[str, datetime] = {}
            for o in kept:
                if not o.result.success and o.delivery.endpoint_id not in succeeded:
                    started = first_failure.get(o.delivery.endpoint_id, o.result.started_at)
                    first_failure[o.delivery.endpoint_id] = min(started, o.result.started_at)
            for endpoint_id, since in first_failure.items():
                conn.execute(
                    update(webhook_endpoints)
                    .where(e.id == endpoint_id, e.failing_since.is_(None))
                    .values(failing_since=since)
                )
            for o in kept:
                if not o.result.success and o.next_attempt_at is None:
                    self._disable_if_persistent(conn, o.delivery, o.result, retry_window, now)
        return len(kept)

    @staticmethod
    def _resume_recovered(conn: Connection, succeeded: set[str], now: datetime) -> None:
        """An endpoint that answered nothing with a 2xx for ``OUTAGE`` or more answers again:
        its backlog is due now, not each delivery at its own backoff (after an hour down the
        next retries are 20 to 40 minutes apart).  Per-subject order still holds: the claim
        takes each subject's earliest pending delivery only.  (A shorter failing spell, such
        as one event the endpoint keeps refusing amid successes, keeps its backoff.)"""
        d, e = webhook_deliveries.c, webhook_endpoints.c
        recovered = list(
            conn.execute(
                select(e.id).where(e.id.in_(succeeded), e.failing_since <= now - OUTAGE)
            ).scalars()
        )
        if recovered:
            conn.execute(
                update(webhook_deliveries)
                .where(
                    d.endpoint_id.in_(recovered),
                    d.state == PENDING,
                    d.next_attempt_at > now,
                )
                .values(next_attempt_at=now, updated_at=now)
            )

    @staticmethod
    def _disable_if_persistent(
        conn: Connection,
        delivery: ClaimedWebhookDelivery,
        result: AttemptResult,
        retry_window: timedelta,
        now: datetime,
    ) -> None:
        e = webhook_endpoints.c
        endpoint = conn.execute(
            select(e.enabled, e.failing_since, e.last_success_at, e.url).where(
                e.id == delivery.endpoint_id
            )
        ).one()
        window_start = delivery.deadline_at - retry_window
        last_success = endpoint.last_success_at and as_utc(endpoint.last_success_at)
        if not endpoint.enabled or (last_success and last_success >= window_start):
            return
        since = as_utc(endpoint.failing_since)
        reason = (
            f"no delivery succeeded since {since.isoformat()}; a delivery failed for its whole "
            f"retry window ({retry_window.total_seconds():g} s), last: "
            f"{result.error or result.status_code}"
        )
        conn.execute(
            update(webhook_endpoints)
            .where(e.id == delivery.endpoint_id)
            .values(enabled=0, disabled_at=now, disabled_reason=reason, updated_at=now)
        )
        add_events_in(
            conn,
            [
                new_event(
                    tenant_id=delivery.tenant_id,
                    type="sealpost.webhook_endpoint.disabled",
                    subject_type="webhook_endpoint",
                    subject_id=delivery.endpoint_id,
                    time=now,
                    data={
                        "endpoint_id": delivery.endpoint_id,
                        "url": endpoint.url,
                        "reason": reason,
                        "failing_since": since.isoformat(),
                        "last_status": result.status_code,
                        "last_error": result.error,
                        "failed_event_id": delivery.event_id,
                    },
                )
            ],
        )

    def purge_finished_before(self, cutoff: datetime, *, batch: int = 2000) -> int:
        """Retention: delete deliveries created before ``cutoff`` that are over (delivered,
        failed, cancelled), with their attempts; endpoint by endpoint through the
        (endpoint, created) index, one batch per transaction.  Returns how many."""
        d, a = webhook_deliveries.c, webhook_attempts.c
        with self.engine.connect() as conn:
            endpoints = list(conn.execute(select(webhook_endpoints.c.id)).scalars())
        purged = 0
        for endpoint_id in endpoints:
            while True:
                with write_transaction(self.engine) as conn:
                    ids = list(
                        conn.execute(
                            select(d.id)
                            .where(
                                d.endpoint_id == endpoint_id,
                                d.created_at < cutoff,
                                d.state != PENDING,
                            )
                            .limit(batch)
                        ).scalars()
                    )
                    if ids:
                        conn.execute(delete(webhook_attempts).where(a.delivery_id.in_(ids)))
                        conn.execute(delete(webhook_deliveries).where(d.id.in_(ids)))
                purged += len(ids)
                if len(ids) < batch:
                    break
        return purged
