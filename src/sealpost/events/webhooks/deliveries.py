"""Webhook deliveries: one per endpoint and event, each with its attempts (the log).

A delivery is created by the fan-out (``events.webhooks.fanout``) in the transaction that
positions its event, worked off by the sender through the claim queue
(``events.webhooks.queue``), and read back here: the delivery log the API shows per endpoint,
the deliveries of one event, the counts by state that ``/healthz`` reports.  The value objects
and states live here because all three speak them; so do the row helpers two of them share.

A test send (``POST /v1/webhooks/{id}/test``) is not an event's delivery: it is logged as a
delivery of its own, already finished, so that it shows in the log but never in the counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, func, insert, or_, select

from sealpost.db.engine import write_transaction
from sealpost.events.tables import (
    outbox_events,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
)
from sealpost.events.webhooks.headers import SigningSecrets
from sealpost.ledger.repository import as_utc

Clock = Callable[[], datetime]
"""The wall clock webhook scheduling reads (claims, attempt times, retries): the fan-out, the
claim queue and the sender each take one, so that a test can run an hour of retries without
waiting an hour.  The Standard Webhooks ``webhook-timestamp`` header keeps the real time:
receivers compare it with theirs."""


def utc_now() -> datetime:
    return datetime.now(UTC)


PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"
DELIVERY_STATES = (PENDING, DELIVERED, FAILED, CANCELLED)
EVENT, REPLAY, TEST = "event", "replay", "test"


@dataclass(frozen=True)
class ClaimedWebhookDelivery:
    """A delivery reserved for one worker, with everything needed to send it."""

    id: str
    endpoint_id: str
    tenant_id: str
    url: str
    event_id: str
    event_type: str
    payload: str
    attempts: int
    deadline_at: datetime
    created_at: datetime
    secrets: SigningSecrets


@dataclass(frozen=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    response_body: str | None
    error: str | None

    @property
    def success(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave, and when to try again (None: never; ignored on success)."""

    delivery: ClaimedWebhookDelivery
    result: AttemptResult
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str | None
    subject: str
    kind: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryLog:
    """The delivery log: what the API shows and ``/healthz`` counts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def log_test(self, endpoint_id: str, event_id: str, result: AttemptResult) -> str:
        """A test send is one attempt of a delivery of its own, shown in the log."""
        now = datetime.now(UTC)
        delivery_id = str(uuid.uuid4())
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(webhook_deliveries).values(
                    id=delivery_id,
                    endpoint_id=endpoint_id,
                    event_id=event_id,
                    position=0,
                    subject="test",
                    kind=TEST,
                    state=DELIVERED if result.success else FAILED,
                    attempts=1,
                    next_attempt_at=now,
                    deadline_at=now,
                    last_status=result.status_code,
                    last_error=result.error,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(webhook_attempts), [attempt_row(delivery_id, endpoint_id, 1, result)]
            )
        return delivery_id

    def deliveries(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        states: Sequence[str] = (),
        before: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        """Newest first; ``before`` is the (created_at, id) of the last one already seen."""
        d = webhook_deliveries.c
        query = _with_type(tenant_id).where(d.endpoint_id == endpoint_id)
        if states:
            query = query.where(d.state.in_(list(states)))
        if before is not None:
            moment, last_id = before
            query = query.where(
                or_(d.created_at < moment, and_(d.created_at == moment, d.id < last_id))
            )
        query = query.order_by(d.created_at.desc(), d.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(query)]

    def delivery(
        self, tenant_id: str, endpoint_id: str, delivery_id: str
    ) -> WebhookDelivery | None:
        d = webhook_deliveries.c
        query = _with_type(tenant_id).where(d.endpoint_id == endpoint_id, d.id == delivery_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _delivery(row)

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        a = webhook_attempts.c
        query = select(webhook_attempts).where(a.delivery_id == delivery_id).order_by(a.number)
        with self.engine.connect() as conn:
            return [
                {
                    "number": r.number,
                    "started_at": as_utc(r.started_at),
                    "duration_ms": r.duration_ms,
                    "status_code": r.status_code,
                    "response_body": r.response_body,
                    "error": r.error,
                    "success": bool(r.success),
                }
                for r in conn.execute(query)
            ]

    def delivery_states(self, event_id: str) -> list[tuple[str, str, int]]:
        """(endpoint id, state, attempts) of every delivery of one event."""
        d = webhook_deliveries.c
        query = select(d.endpoint_id, d.state, d.attempts).where(d.event_id == event_id)
        with self.engine.connect() as conn:
            return [(r.endpoint_id, r.state, r.attempts) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        d = webhook_deliveries.c
        query = select(d.state, func.count()).where(d.kind != TEST).group_by(d.state)
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(query)}

    def pending_backlog(self, cap: int) -> tuple[int, datetime | None]:
        """Deliveries not yet done (due or waiting to retry), up to ``cap``, and the earliest
        next attempt among them: both read the partial index ``ix_webhook_deliveries_due``
        (pending rows only), cheap at every scrape."""
        d = webhook_deliveries.c
        pending = select(d.next_attempt_at).where(d.state == PENDING, d.kind != TEST)
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(pending.limit(cap).subquery())
            ).scalar_one()
            first = conn.execute(pending.order_by(d.next_attempt_at).limit(1)).scalar_one_or_none()
        return int(count), None if first is None else as_utc(first)


# -- row helpers shared with the claim queue and the endpoint repository ----------------------


def secrets_of(row: Any) -> SigningSecrets:
    """An endpoint's signing secrets from a row with its three secret columns."""
    until = None if row.previous_secret_until is None else as_utc(row.previous_secret_until)
    return SigningSecrets(row.secret, row.previous_secret, until)


def attempt_row(
    delivery_id: str, endpoint_id: str, number: int, result: AttemptResult
) -> dict[str, Any]:
    """The ``webhook_attempts`` row of one attempt (a test send's, or a claimed delivery's)."""
    return {
        "id": str(uuid.uuid4()),
        "delivery_id": delivery_id,
        "endpoint_id": endpoint_id,
        "number": number,
        "started_at": result.started_at,
        "duration_ms": result.duration_ms,
        "status_code": result.status_code,
        "response_body": result.response_body,
        "error": result.error,
        "success": int(result.success),
    }


def _with_type(tenant_id: str) -> Select[Any]:
    """Deliveries of the tenant's endpoints, with their event's type (none for a test)."""
    d, o, e = webhook_deliveries.c, outbox_events.c, webhook_endpoints.c
    return (
        select(webhook_deliveries, o.type)
        .select_from(
            webhook_deliveries.join(webhook_endpoints, e.id == d.endpoint_id).outerjoin(
                outbox_events, o.id == d.event_id
            )
        )
        .where(e.tenant_id == tenant_id)
    )


def _delivery(r: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=r.id,
        endpoint_id=r.endpoint_id,
        event_id=r.event_id,
        event_type=r.type,
        subject=r.subject,
        kind=r.kind,
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=as_utc(r.next_attempt_at) if r.state == PENDING else None,
        last_status=r.last_status,
        last_error=r.last_error,
        created_at=as_utc(r.created_at),
        updated_at=as_utc(r.updated_at),
    )
