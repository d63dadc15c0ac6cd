"""A webhook receiver down for an hour (issue 12's campaign), on a clock the test moves.

The real dispatcher and webhook sender run as in ``sealpost serve`` (their loops, a real HTTP
receiver on 127.0.0.1 that stops listening: "connection refused"), but read the time from
``Sealpost.clock``, which the test moves from one due retry to the next: an hour of the
default schedule (5 s doubling, jitter) takes seconds.  While the receiver is down each
subject's first waiting delivery is retried and the ones behind it wait their turn; the
endpoint stays enabled (the window is 24 h), Sealpost's health is not affected (the
receiver is the integrator's), and the delivery log says what went wrong.  When the receiver
is back, the next retry succeeds and the whole backlog follows at once, in order per subject,
each event exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.events.registry import new_event
from sealpost.events.tables import outbox_events, webhook_attempts, webhook_deliveries
from sealpost.events.webhooks.deliveries import PENDING
from sealpost.ledger.repository import as_utc
from tests.support.clock import ManualClock
from tests.support.webhook_receiver import WebhookReceiver

HOUR = timedelta(hours=1)
SUBJECTS = 6
EVENTS_PER_SUBJECT = 3


@dataclass
class Running:
    sp: Sealpost
    clock: ManualClock
    tenant_id: str
    client: TestClient
    key: dict[str, str]


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    """Dispatcher and sender loops on a manual clock; an API client for the delivery log."""
    sp = build(
        settings.model_copy(
            update={
                "webhook_allow_private_networks": True,
                "webhook_timeout_seconds": 2.0,
                "events_poll_interval_ms": 5,
                "events_idle_poll_interval_ms": 20,
                "sequencer_enabled": False,
            }
        )
    )
    clock = ManualClock()
    sp.clock = clock  # before any events part is built: they all read this one
    tenant_id = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}").id
    key = {"Authorization": f"Bearer {sp.tenants.issue_api_key(tenant_id, 'crm').secret}"}
    sp.start_events()
    try:
        with TestClient(create_app(sp, start_background=False)) as client:
            yield Running(sp, clock, tenant_id, client, key)
    finally:
        sp.stop_background()
        sp.engine.dispose()


def emit(run: Running, subject: str, n: int) -> None:
    run.sp.outbox.append(
        [
            new_event(
                tenant_id=run.tenant_id,
                type="sealpost.communication.delayed",
                subject_type="communication",
                subject_id=subject,
                time=run.clock(),
                data={"n": n},
            )
        ]
    )


def pending(run: Running) -> list[tuple[str, int, datetime, str | None]]:
    d = webhook_deliveries.c
    with run.sp.engine.connect() as conn:
        rows = conn.execute(
            select(d.subject, d.position, d.next_attempt_at, d.lease_owner).where(
                d.state == PENDING
            )
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def heads(run: Running) -> dict[str, tuple[int, datetime, str | None]]:
    """Each subject's first pending delivery: the only one the sender may attempt."""
    first: dict[str, tuple[int, datetime, str | None]] = {}
    for subject, position, due, owner in pending(run):
        if subject not in first or position < first[subject][0]:
            first[subject] = (position, due, owner)
    return first


def attempts_by_delivery(run: Running) -> Counter[str]:
    a = webhook_attempts.c
    with run.sp.engine.connect() as conn:
        rows = conn.execute(select(a.delivery_id, func.count()).group_by(a.delivery_id)).all()
    return Counter({r[0]: r[1] for r in rows})


def settle(run: Running, timeout: float = 20.0) -> None:
    """Until the sender has attempted everything due at the clock's time (nothing in flight,
    every subject's first waiting delivery due later), or nothing is pending."""
    deadline = time.monotonic() + timeout
    while True:
        now = run.clock()
        first = heads(run)
        if all(owner is None and as_utc(due) > now for _, due, owner in first.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the sender did not settle at {now}: {first}")
        time.sleep(0.02)


def test_a_receiver_down_for_an_hour_loses_nothing_and_gets_everything_in_order_after(
    running: Running,
) -> None:
    run, sp = running, running.sp
    with WebhookReceiver() as receiver:
        endpoint = sp.webhooks.create(
            run.tenant_id,
            url=receiver.url,
            description="CRM",
            event_types=[],
            secret="whsec_" + "QUJD" * 8,
        )
        emit(run, "warm-up", 1)
        receiver.wait_for(1)

        receiver.down()
        down_at = run.clock()
        subjects = [str(uuid.uuid4()) for _ in range(SUBJECTS)]
        for n in range(EVENTS_PER_SUBJECT):  # interleaved, as state changes come
            for subject in subjects:
                emit(run, subject, n)
        late_sent = False
        while True:  # from one due retry to the next, for an hour
            settle(run)
            if not late_sent and run.clock() - down_at > HOUR / 2:
                late_sent = True
                for n in range(2):  # events go on during the outage: they queue too
                    emit(run, "late", n)
                continue
            next_due = min(due for _, due, _ in heads(run).values())
            if as_utc(next_due) - down_at >= HOUR:
                break
            run.clock.set(as_utc(next_due))
            sp.webhooks_due.set()

        # an hour on: nothing delivered, nothing given up, only first deliveries attempted
        assert len(receiver.delivered()) == 1
        attempted = attempts_by_delivery(run)
        d = webhook_deliveries.c
        with sp.engine.connect() as conn:
            rows = conn.execute(
                select(d.id, d.subject, d.position, d.state, d.attempts).order_by(d.position)
            ).all()
        waiting = [r for r in rows if not r.subject.endswith("/warm-up")]
        assert {r.state for r in waiting} == {PENDING}
        by_subject: defaultdict[str, list[int]] = defaultdict(list)
        for r in waiting:
            by_subject[r.subject].append(attempted[r.id])
        for subject, counts in by_subject.items():
            assert counts[0] >= 1 and counts[1:] == [0] * (len(counts) - 1), (subject, counts)
        most = max(counts[0] for counts in by_subject.values())
        assert 8 <= most <= 14, most  # 5 s doubling with jitter: about ten tries in an hour

        # clear while it lasts: the log names the failure; Sealpost's health is not the
        # receiver's (200), the endpoint is still enabled, its backlog counted as pending
        log = run.client.get(f"/v1/webhooks/{endpoint.id}/deliveries", headers=run.key)
        assert log.status_code == 200, log.text
        failed = [x for x in log.json()["items"] if x["state"] == PENDING and x["attempts"]]
        assert failed and all("Connect" in (x["last_error"] or "") for x in failed), failed
        health = run.client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["events"]["webhook_deliveries"]["pending"] == len(waiting)
        assert sp.webhooks.get(run.tenant_id, endpoint.id).enabled

        # back after an hour: the next retry succeeds and the whole backlog follows at once
        receiver.up()
        back_at = as_utc(min(due for _, due, _ in heads(run).values()))
        run.clock.set(back_at)
        sp.webhooks_due.set()
        expected = 1 + len(waiting)
        receiver.wait_for(expected, timeout=30)
        time.sleep(0.3)  # anything more would be a duplicate
        assert run.clock() == back_at  # no retry had to wait for its own backoff
        settle(run)
        assert heads(run) == {}

    received = [r.event for r in receiver.delivered()]
    assert len(received) == expected
    assert len({e["id"] for e in received}) == expected  # each event exactly once
    arrived: defaultdict[str, list[str]] = defaultdict(list)
    for event in received:
        arrived[event["subject"]].append(event["id"])
    o = outbox_events.c
    with sp.engine.connect() as conn:
        emitted = conn.execute(select(o.id, o.subject_id).order_by(o.position)).all()
    committed: defaultdict[str, list[str]] = defaultdict(list)
    for event_id, subject_id in emitted:
        committed[f"communications/{subject_id}"].append(event_id)
    assert arrived == committed  # nothing lost, and in the order committed, per subject
    assert sorted(len(ids) for ids in arrived.values()) == [1, 2] + [EVENTS_PER_SUBJECT] * SUBJECTS
    print(
        f"webhook receiver down {HOUR}: {sum(attempted.values())} failed attempts, "
        f"{most} at most per delivery; {expected} events delivered once back"
    )
