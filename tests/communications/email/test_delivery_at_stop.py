"""Deliveries at a stop (SIGTERM): the work in flight ends by serve's bound, a claim is
released only once its work stopped, and a claim never tried uses up no attempt.

A recipient server on 127.0.0.1 that accepts and never greets keeps an attempt running.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from sealpost.app import Sealpost, build
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.communications.tables import communications
from sealpost.config import Settings
from tests.support.delivery_load import numbered_message
from tests.support.mail import RECIPIENT_DOMAIN, email_settings
from tests.support.silent_peer import SilentServer


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def sp(settings: Settings, silent: SilentServer) -> Iterator[Sealpost]:
    # a bound far longer than the stop the test asks for: only the shared deadline ends it
    sealpost = build(email_settings(settings, silent.port, shutdown_timeout_seconds=60.0))
    try:
        yield sealpost
    finally:
        sealpost.stop_background(5.0)
        sealpost.engine.dispose()


def _queue(sp: Sealpost) -> str:
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    _, raw = numbered_message(0, to=f"bob@{RECIPIENT_DOMAIN}")
    request = SubmissionRequest(
        tenant_id=tenant.id,
        via="api",
        mail_from="service@acme.test",
        recipients=(f"bob@{RECIPIENT_DOMAIN}",),
        raw=raw,
        identification={"method": "api-key"},
    )
    return sp.submissions.submit(request).result(60).communication_ids[0]


def _row(sp: Sealpost, communication_id: str) -> tuple[str | None, int]:
    c = communications.c
    with sp.engine.connect() as conn:
        row = conn.execute(select(c.lease_owner, c.attempts).where(c.id == communication_id)).one()
    return row.lease_owner, int(row.attempts)


def test_the_delivery_loop_stops_by_the_stop_deadline_then_its_claim_is_released(
    sp: Sealpost, silent: SilentServer
) -> None:
    """An attempt stuck on a silent recipient is given up by the stop's deadline, not after
    the whole SEALPOST_SHUTDOWN_TIMEOUT_SECONDS from when the loop noticed the stop: the loop
    has stopped when its claim is released (never released under a running attempt)."""
    communication_id = _queue(sp)
    sp.supervisor.start(sp.communications_loops())
    deadline = time.monotonic() + 30
    while not silent.accepted:
        assert time.monotonic() < deadline, "the delivery never connected"
        time.sleep(0.05)
    assert _row(sp, communication_id)[0] == sp.delivery.owner
    started = time.monotonic()
    sp.stop_background(4.0)
    assert time.monotonic() - started < 5.0
    delivering = [t for t in threading.enumerate() if t.name == "sealpost-delivery"]
    assert not any(t.is_alive() for t in delivering), "released while the attempt still ran"
    assert _row(sp, communication_id)[0] is None


def test_a_claim_whose_work_still_runs_keeps_its_lease(sp: Sealpost) -> None:
    """Past the bound a loop still running keeps its claims: released, another process would
    deliver again what this one is still sending; they expire, as after a crash."""
    communication_id = _queue(sp)
    owner = sp.delivery.owner
    [claimed] = sp.communications.claim_due(owner, limit=1, lease_seconds=30)
    assert claimed.id == communication_id
    sp.release_leases(running={"delivery"})
    assert _row(sp, communication_id)[0] == owner
    sp.release_leases()
    assert _row(sp, communication_id)[0] is None


def test_releasing_a_claim_never_tried_gives_its_attempt_back(sp: Sealpost) -> None:
    """Every restart would otherwise use up one attempt of each message claimed but not yet
    tried (the claim counts the attempt)."""
    tried, untried = _queue(sp), _queue(sp)
    owner = sp.delivery.owner
    claimed = sp.communications.claim_due(owner, limit=2, lease_seconds=30)
    assert {c.id for c in claimed} == {tried, untried}
    assert _row(sp, untried) == (owner, 1)
    assert sp.communications.release_leases(owner, {untried}) == 2
    assert _row(sp, untried) == (None, 0)
    assert _row(sp, tried) == (None, 1)  # its recipient was tried: the attempt counts
