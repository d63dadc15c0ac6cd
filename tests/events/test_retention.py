"""Retention (SQLite and the real PostgreSQL): old events and finished webhook deliveries are
purged, never an event the broker has not confirmed or a webhook still retries; positions go
on growing after a purge; a pull cursor older than the purge answers 410, not a silent gap."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.events.dispatcher import EventDispatcher
from sealpost.events.outbox import AMQP_CURSOR
from sealpost.events.tables import webhook_attempts, webhook_deliveries
from sealpost.events.webhooks.deliveries import AttemptResult, Outcome
from tests.events.test_webhook_deliveries import WINDOW, endpoint, events

AFTER_RETENTION = timedelta(days=31)  # the default retention is 30 days


def _rows(sp: Sealpost, table) -> int:  # type: ignore[no-untyped-def]
    with sp.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_purge_keeps_what_is_still_owed_and_positions_go_on(
    sealpost: Sealpost, tenant_id: str
) -> None:
    endpoint(sealpost, tenant_id)
    subjects = [str(uuid.uuid4()) for _ in range(6)]
    positioned = events(sealpost, tenant_id, subjects)
    queue = sealpost.webhook_queue
    sealpost.webhook_replay.replay(positioned, endpoint_id=None, retry_window=WINDOW)
    claimed = queue.claim_due("w", limit=10, lease_seconds=60)
    assert len(claimed) == 6
    done = AttemptResult(datetime.now(UTC), 3, 204, "", None)
    still_retried = next(c for c in claimed if c.event_id == positioned[1].id)
    queue.finish(
        "w",
        [Outcome(c, done, None) for c in claimed if c is not still_retried]
        + [Outcome(still_retried, dataclasses.replace(done, status_code=500), datetime.now(UTC))],
        retry_window=WINDOW,
    )
    assert _rows(sealpost, webhook_attempts) == 6

    dispatcher = EventDispatcher(sealpost.outbox, sealpost.settings)
    later = datetime.now(UTC) + AFTER_RETENTION
    assert dispatcher.purge_expired(now=datetime.now(UTC)) == (0, 0)  # nothing is old yet

    purged_events, purged_deliveries = dispatcher.purge_expired(now=later)
    kept = {e.id for e in sealpost.outbox.page(tenant_id, limit=100)}
    # the retried one and the newest (positions continue from it) stay
    assert kept == {positioned[1].id, positioned[-1].id}
    assert purged_events == 4
    assert purged_deliveries == 5 and _rows(sealpost, webhook_deliveries) == 1
    assert _rows(sealpost, webhook_attempts) == 1  # the retried delivery's log is kept

    # a new event continues the positions, it does not reuse a purged one
    fresh = events(sealpost, tenant_id, [str(uuid.uuid4())])
    assert fresh[0].position == positioned[-1].position + 1


def test_events_the_broker_has_not_confirmed_are_never_purged(
    sealpost: Sealpost, tenant_id: str
) -> None:
    positioned = events(sealpost, tenant_id, [str(uuid.uuid4()) for _ in range(5)])
    assert sealpost.outbox.advance_cursor(AMQP_CURSOR, 0, positioned[1].position)
    dispatcher = EventDispatcher(sealpost.outbox, sealpost.settings)
    dispatcher.publisher = object()  # type: ignore[assignment]  # "a broker is configured"
    events_purged, _ = dispatcher.purge_expired(now=datetime.now(UTC) + AFTER_RETENTION)
    assert events_purged == 2
    left = [e.position for e in sealpost.outbox.page(tenant_id, limit=100)]
    assert left == [p.position for p in positioned[2:]]


def test_a_pull_cursor_older_than_the_purge_is_gone(sealpost: Sealpost, tenant_id: str) -> None:
    positioned = events(sealpost, tenant_id, [str(uuid.uuid4()) for _ in range(4)])
    secret = sealpost.tenants.issue_api_key(tenant_id, "crm").secret
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(sealpost, start_background=False)) as client:
        first = client.get("/v1/events", params={"limit": 1}, headers=headers).json()
        cursor = first["next_cursor"]
        assert cursor == str(positioned[0].position)

        EventDispatcher(sealpost.outbox, sealpost.settings).purge_expired(
            now=datetime.now(UTC) + AFTER_RETENTION
        )
        stale = client.get("/v1/events", params={"after": cursor}, headers=headers)
        assert stale.status_code == 410
        assert stale.json()["error"] == "gone"
        assert "purged" in stale.json()["message"]

        restart = client.get("/v1/events", headers=headers).json()
        assert [e["id"] for e in restart["events"]] == [positioned[-1].id]
        current = client.get(
            "/v1/events", params={"after": restart["next_cursor"]}, headers=headers
        )
        assert current.status_code == 200 and current.json()["events"] == []
