"""The outbox: events commit with their state change or not at all, sequences per subject,
dense positions given by one dispatcher at a time (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from sealpost.app import Sealpost
from sealpost.db.engine import write_transaction
from sealpost.events.dispatcher import EventDispatcher
from sealpost.events.outbox import LeaseLost, append_evidence
from sealpost.events.tables import outbox_events
from sealpost.ledger.records import Party, Reason, Subject, new_record
from sealpost.ledger.tables import evidence_records


def _record(tenant_id: str, subject_id: str, event: str = "DelayWarning"):  # type: ignore[no-untyped-def]
    reasons = (Reason("delayed", "12 h"),) if event in ("DelayWarning", "NonDelivery") else ()
    return new_record(
        tenant_id=tenant_id,
        event=event,
        subject=Subject("communication", subject_id),
        recipient=Party("jane@customer.example"),
        reasons=reasons,
    )


def _count(sp: Sealpost, table) -> int:  # type: ignore[no-untyped-def]
    with sp.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_an_event_commits_with_its_evidence_or_not_at_all(
    sealpost: Sealpost, tenant_id: str
) -> None:
    subject = str(uuid.uuid4())

    def failing_change() -> None:
        with write_transaction(sealpost.engine) as conn:
            append_evidence(conn, [_record(tenant_id, subject)])
            raise RuntimeError("the state change failed after writing its evidence")

    with pytest.raises(RuntimeError):
        failing_change()
    assert _count(sealpost, evidence_records) == 0
    assert _count(sealpost, outbox_events) == 0

    with write_transaction(sealpost.engine) as conn:
        append_evidence(
            conn,
            [
                _record(tenant_id, subject, "SubmissionAcceptance"),
                _record(tenant_id, subject, "RelayToNonERDS"),
            ],
        )
    assert _count(sealpost, evidence_records) == 2
    events = sealpost.outbox.after(0, 10)
    assert events == []  # committed, but not visible to consumers before it has a position
    dispatcher = EventDispatcher(sealpost.outbox, sealpost.settings)
    assert asyncio.run(dispatcher.run_until_idle()) == 2
    events = sealpost.outbox.page(tenant_id)
    assert [(e.type, e.sequence, e.position) for e in events] == [
        ("sealpost.communication.accepted", 1, 1),  # an opening event: no counter row
        ("sealpost.communication.delivered", 2, 2),
    ]


def test_concurrent_changes_of_one_subject_are_numbered_in_commit_order(
    sealpost: Sealpost, tenant_id: str
) -> None:
    """Writers racing on the same subjects: every subject's sequence is 1..n without a gap
    or a repeat, and positions (what consumers read in) follow the sequence."""
    subjects = [str(uuid.uuid4()) for _ in range(4)]
    errors: list[BaseException] = []
    sealpost.communications.append_records(
        [_record(tenant_id, s, "SubmissionAcceptance") for s in subjects]
    )

    def writer(index: int) -> None:
        try:
            for round_ in range(15):
                with write_transaction(sealpost.engine) as conn:
                    append_evidence(
                        conn, [_record(tenant_id, s) for s in subjects[(index + round_) % 4 :]]
                    )
                    time.sleep(0.001)  # hold the row locks a little, as a real change does
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    dispatcher = EventDispatcher(sealpost.outbox, sealpost.settings)
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # position while writers still commit
        asyncio.run(dispatcher.run_until_idle())
        time.sleep(0.002)
    for t in threads:
        t.join()
    asyncio.run(dispatcher.run_until_idle())
    assert not errors, errors
    events = sealpost.outbox.page(tenant_id, limit=10_000)
    assert [e.position for e in events] == list(range(1, len(events) + 1))  # dense
    by_subject: dict[str, list[int]] = defaultdict(list)
    for e in events:
        by_subject[e.subject].append(e.sequence)
    for sequences in by_subject.values():
        assert sequences == list(range(1, len(sequences) + 1))
    assert sum(len(v) for v in by_subject.values()) == _count(sealpost, evidence_records)


def test_only_the_lease_holder_positions(sealpost: Sealpost, tenant_id: str) -> None:
    first = EventDispatcher(sealpost.outbox, sealpost.settings, holder="first")
    second = EventDispatcher(sealpost.outbox, sealpost.settings, holder="second")
    sealpost.communications.append_records(
        [_record(tenant_id, str(uuid.uuid4()), "SubmissionAcceptance")]
    )
    assert first.hold_lease()
    assert not second.hold_lease()
    with pytest.raises(LeaseLost):
        sealpost.outbox.position_new("second", limit=10)
    assert first.position() == 1
    assert sealpost.outbox.page(tenant_id)[0].position == 1
