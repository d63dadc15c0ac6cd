"""The deadlines clock on a frozen clock, on SQLite and PostgreSQL: a term whose end passed
while nothing ran is sealed as passed once (no late "approaching"), and two clocks running at
once seal each change once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

from sealpost.app import Sealpost
from sealpost.deadlines.repository import DeadlineRepository
from sealpost.deadlines.rules import DeadlineRule, compute
from sealpost.deadlines.service import DeadlineService, DeadlineSettings
from sealpost.ledger.repository import timeline
from tests.support.mail import accept_one

HANDOVER = datetime(2026, 12, 3, 10, tzinfo=UTC)
RULE = DeadlineRule(10, "business_days", "handover", "ES-CT")


def _service(sp: Sealpost, now: list[datetime], lead: int = 2) -> DeadlineService:
    return DeadlineService(
        DeadlineRepository(sp.engine),
        sp.outbox,
        sp.engine,
        DeadlineSettings(lead_business_days=lead),
        now=lambda: now[0],
    )


def _events(sp: Sealpost, tenant_id: str, cid: str) -> list[str]:
    return [
        e.event
        for e in timeline(sp.engine, tenant_id, "communication", cid)
        if e.event.startswith("Deadline")
    ]


def test_a_term_found_late_is_sealed_passed_once(sealpost: Sealpost, tenant_id: str) -> None:
    cid = accept_one(sealpost, tenant_id, "late")
    now = [HANDOVER]
    service = _service(sealpost, now)
    computed = compute(RULE, HANDOVER)
    assert computed.ends_on == date(2026, 12, 18)
    started = service.start(tenant_id, "communication", cid, str(uuid.uuid4()), computed)
    assert started is not None
    assert started.approaching_at == datetime(2026, 12, 15, 23, tzinfo=UTC)  # 16 Dec 00:00 CET
    assert service.start(tenant_id, "communication", cid, str(uuid.uuid4()), computed) is None
    assert service.tick() == 0
    now[0] = datetime(2026, 12, 19, 9, tzinfo=UTC)  # nothing ran for days
    assert service.tick() == 1
    assert service.tick() == 0
    assert _events(sealpost, tenant_id, cid) == ["DeadlineSet", "DeadlinePassed"]
    [stored] = service.repo.for_subject(tenant_id, "communication", cid)
    assert stored.status == "passed"


def test_no_lead_time_approaches_on_the_last_day(sealpost: Sealpost, tenant_id: str) -> None:
    cid = accept_one(sealpost, tenant_id, "nolead")
    now = [HANDOVER]
    service = _service(sealpost, now, lead=0)
    started = service.start(
        tenant_id, "communication", cid, str(uuid.uuid4()), compute(RULE, HANDOVER)
    )
    assert started is not None
    assert started.approaching_at == datetime(2026, 12, 17, 23, tzinfo=UTC)  # 18 Dec 00:00 CET
    now[0] = started.approaching_at
    assert service.tick() == 1
    assert _events(sealpost, tenant_id, cid) == ["DeadlineSet", "DeadlineApproaching"]


def test_two_clocks_at_once_seal_each_change_once(sealpost: Sealpost, tenant_id: str) -> None:
    ids = [accept_one(sealpost, tenant_id, f"race{i}") for i in range(5)]
    now = [HANDOVER]
    first, second = _service(sealpost, now), _service(sealpost, now)
    for cid in ids:
        first.start(tenant_id, "communication", cid, str(uuid.uuid4()), compute(RULE, HANDOVER))
    now[0] = datetime(2026, 12, 16, 9, tzinfo=UTC)
    moved = []
    threads = [threading.Thread(target=lambda s=s: moved.append(s.tick())) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(moved) == len(ids)
    for cid in ids:
        assert _events(sealpost, tenant_id, cid) == ["DeadlineSet", "DeadlineApproaching"]
    now[0] += timedelta(days=3)
    assert first.tick() + second.tick() == len(ids)
    for cid in ids:
        assert _events(sealpost, tenant_id, cid)[-1] == "DeadlinePassed"
