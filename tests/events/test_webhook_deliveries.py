"""Claiming webhook deliveries (SQLite and the real PostgreSQL): one delivery per subject and
endpoint at a time, in position order, while other subjects go on; claims are exclusive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from sealpost.app import Sealpost
from sealpost.events.dispatcher import EventDispatcher
from sealpost.events.outbox import PositionedEvent
from sealpost.events.registry import new_event
from sealpost.events.webhooks.deliveries import AttemptResult, ClaimedWebhookDelivery, Outcome
from sealpost.events.webhooks.queue import WebhookQueue
from sealpost.events.webhooks.repository import Endpoint
from tests.support.clock import ManualClock

WINDOW = timedelta(hours=24)


def endpoint(sp: Sealpost, tenant_id: str) -> Endpoint:
    return sp.webhooks.create(
        tenant_id,
        url="https://crm.example.com/hook",
        description="",
        event_types=[],
        secret="whsec_" + "QUJD" * 8,
    )


def events(sp: Sealpost, tenant_id: str, subjects: list[str]) -> list[PositionedEvent]:
    """Outbox rows (the claim joins them for the payload) and their positions."""
    new = [
        new_event(
            tenant_id=tenant_id,
            type="sealpost.communication.delayed",
            subject_type="communication",
            subject_id=s,
            time=datetime.now(UTC),
            data={},
        )
        for s in subjects
    ]
    sp.outbox.append(new)
    dispatcher = EventDispatcher(sp.outbox, sp.settings, holder="test-dispatcher")
    assert dispatcher.hold_lease()
    return sp.outbox.position_new(dispatcher.holder, limit=1000)


def ok() -> AttemptResult:
    return ok_at(datetime.now(UTC))


def ok_at(moment: datetime) -> AttemptResult:
    return AttemptResult(moment, 3, 204, "", None)


def test_one_delivery_per_subject_at_a_time_in_position_order(
    sealpost: Sealpost, tenant_id: str
) -> None:
    endpoint(sealpost, tenant_id)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    positioned = events(sealpost, tenant_id, [a, a, b, a])
    queue = sealpost.webhook_queue
    assert sealpost.webhook_replay.replay(positioned, endpoint_id=None, retry_window=WINDOW) == 4

    first = queue.claim_due("w1", limit=10, lease_seconds=60)
    assert sorted(c.event_id for c in first) == sorted([positioned[0].id, positioned[2].id])
    assert queue.claim_due("w2", limit=10, lease_seconds=60) == []  # the rest wait their turn

    a1 = next(c for c in first if c.event_id == positioned[0].id)
    assert queue.finish("w1", [Outcome(a1, ok(), None)], retry_window=WINDOW) == 1
    second = queue.claim_due("w2", limit=10, lease_seconds=60)
    assert [c.event_id for c in second] == [positioned[1].id]  # a's next, not a's third

    failed_once = AttemptResult(datetime.now(UTC), 3, 500, "no", "HTTP 500")
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    queue.finish("w2", [Outcome(second[0], failed_once, retry_at)], retry_window=WINDOW)
    assert queue.claim_due("w3", limit=10, lease_seconds=60) == []  # a2 retries later: a3 waits

    # a finish by a worker whose lease was taken over is refused
    stale = Outcome(next(c for c in first if c.event_id == positioned[2].id), ok(), None)
    assert queue.finish("someone-else", [stale], retry_window=WINDOW) == 0
    assert queue.finish("w1", [stale], retry_window=WINDOW) == 1


def test_an_endpoint_back_after_an_outage_has_its_backlog_due_at_once_a_short_spell_not(
    sealpost: Sealpost, tenant_id: str
) -> None:
    """After a minute or more without a 2xx, a success makes every waiting delivery of the
    endpoint due now (a receiver back after an hour does not wait 20-40 minutes for each
    retry); one failing spell shorter than that keeps the others' backoff (no retry storm)."""
    endpoint(sealpost, tenant_id)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    positioned = events(sealpost, tenant_id, [a, b, c])
    sealpost.webhook_replay.replay(positioned, endpoint_id=None, retry_window=WINDOW)
    clock = ManualClock()
    queue = WebhookQueue(sealpost.engine, clock=clock)

    def claim() -> list[ClaimedWebhookDelivery]:
        return queue.claim_due("w", limit=10, lease_seconds=60)

    def fail(delivery: ClaimedWebhookDelivery, retry_in: timedelta) -> Outcome:
        result = AttemptResult(clock(), 3, None, None, "ClientConnectorError: refused")
        return Outcome(delivery, result, clock() + retry_in)

    def succeed(delivery: ClaimedWebhookDelivery) -> Outcome:
        return Outcome(delivery, ok_at(clock()), None)

    first = claim()
    assert [d.event_id for d in first] == [e.id for e in positioned]
    retry_in = [timedelta(seconds=10), timedelta(minutes=40), timedelta(minutes=90)]
    failed = [fail(d, t) for d, t in zip(first, retry_in, strict=True)]
    queue.finish("w", failed, retry_window=WINDOW)

    clock.advance(30)  # a short spell: a's retry succeeds, b and c keep their backoff
    retried = claim()
    assert [d.event_id for d in retried] == [positioned[0].id]
    queue.finish("w", [succeed(retried[0])], retry_window=WINDOW)
    assert claim() == []

    clock.advance(41 * 60)  # b fails again; then the endpoint answers nothing for 50 min
    retried = claim()
    assert [d.event_id for d in retried] == [positioned[1].id]
    queue.finish("w", [fail(retried[0], timedelta(hours=3))], retry_window=WINDOW)
    clock.advance(50 * 60)
    retried = claim()
    assert [d.event_id for d in retried] == [positioned[2].id]
    queue.finish("w", [succeed(retried[0])], retry_window=WINDOW)  # it is back: b is due now
    assert [d.event_id for d in claim()] == [positioned[1].id]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_delivery_is_not_claimed_for_an_endpoint_disabled_while_the_claim_runs(
    sealpost: Sealpost, tenant_id: str
) -> None:
    """PostgreSQL reads what is committed when each statement starts.  A claim whose candidate
    read ran before the endpoint was disabled (with its subject's earliest delivery failed for
    good, in one commit) must not lease the next delivery of that subject: it would be sent to
    the disabled endpoint and fail at once instead of waiting for the endpoint's return."""
    hook = endpoint(sealpost, tenant_id)
    a = str(uuid.uuid4())
    positioned = events(sealpost, tenant_id, [a, a])
    sealpost.webhook_replay.replay(positioned, endpoint_id=None, retry_window=WINDOW)
    queue = sealpost.webhook_queue
    [first] = queue.claim_due("w1", limit=10, lease_seconds=60)
    refused = AttemptResult(datetime.now(UTC), 3, 503, "", "HTTP 503")
    fired: list[str] = []

    def finish_between_statements(
        conn: Any, cursor: Any, statement: str, *args: Any, **kwargs: Any
    ) -> None:
        if "min(" in statement and not fired:  # the claim's "earliest per subject" read
            fired.append(statement)
            kept = queue.finish("w1", [Outcome(first, refused, None)], retry_window=WINDOW)
            assert kept == 1

    event.listen(sealpost.engine, "before_cursor_execute", finish_between_statements)
    try:
        claimed = queue.claim_due("w2", limit=10, lease_seconds=60)
    finally:
        event.remove(sealpost.engine, "before_cursor_execute", finish_between_statements)
    assert fired, "the claim's statements changed: this test no longer interleaves"
    assert sealpost.webhooks.get(tenant_id, hook.id).enabled is False
    assert claimed == []  # the second delivery waits for the endpoint, in order

    sealpost.webhooks.update(tenant_id, hook.id, enabled=True, retry_window=WINDOW)
    assert [c.event_id for c in queue.claim_due("w2", limit=10, lease_seconds=60)] == [
        positioned[1].id
    ]
