"""Which evidence records become events, with what payload; filters; the retry schedule."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from sealpost.events.cloudevents import encode, envelope
from sealpost.events.registry import (
    REGISTRY,
    events_for_records,
    matches,
    new_event,
    valid_pattern,
)
from sealpost.events.webhooks.sender import next_attempt_at
from sealpost.ledger.records import (
    ContentInfo,
    EvidenceRecord,
    Party,
    Reason,
    Subject,
    new_record,
    record_from_json,
)

ETSI = "http://uri.etsi.org/19522/Event/"
CID = "0b6e6d2c-5c5e-4a8f-9a57-4f7b8f2f8b11"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def record(event: str, *, reasons: tuple[Reason, ...] = (), **details: object):  # type: ignore[no-untyped-def]
    return new_record(
        tenant_id="t1",
        event=event,
        subject=Subject("communication", CID),
        event_time=T0,
        sender=Party("care@acme.example"),
        recipient=Party("jane@customer.example"),
        application_identifier="<n1@acme.example>",
        content=ContentInfo("a" * 64, 1234) if event == "SubmissionAcceptance" else None,
        reasons=reasons,
        details=details,
    )


def test_each_outcome_is_one_event_and_a_retry_is_none() -> None:
    records = [
        record("SubmissionAcceptance", via="smtp", submission_id="s1", message={"subject": "X"}),
        record(
            "RelayToNonERDSFailure",
            reasons=(Reason("smtp-451", "451 later"),),
            reply="451 later",
        ),
        record(
            "RelayToNonERDSFailure",
            reasons=(Reason("connection", "refused"),),
            reply="refused",
        ),
        record("RelayToNonERDS", reply="250 ok queued as Q1", attempt=3, queue_id="Q1"),
    ]
    events = events_for_records(records)
    assert [e.type for e in events] == [
        "sealpost.communication.accepted",
        "sealpost.communication.delivered",
    ]
    accepted, delivered = events
    assert accepted.data["status"] == "queued"
    assert accepted.data["subject"] == "X"
    assert accepted.data["content"] == {"sha256": "a" * 64, "size": 1234}
    assert delivered.data == {
        "communication_id": CID,
        "status": "delivered",
        "record_id": records[3].id,
        "evidence_event": "RelayToNonERDS",
        "evidence": f"/v1/evidence/{records[3].id}",
        "sender": "care@acme.example",
        "recipient": "jane@customer.example",
        "message_id": "<n1@acme.example>",
        "reply": "250 ok queued as Q1",
        "attempt": 3,
        "queue_id": "Q1",
    }
    assert delivered.record_id == records[3].id
    assert delivered.subject == f"communications/{CID}"


def _legacy(event: str, code: str, group: str, kind: str) -> EvidenceRecord:
    """A delivery record as catalogue 1 wrote it (record version 1), read back from its JSON."""
    return record_from_json(
        {
            "version": 1,
            "id": "7d1f0a52-3c9e-4b1a-8e2f-6a5b4c3d2e10",
            "tenant": "t1",
            "event": {"name": event, "uri": ETSI + event, "group": group, "code": code},
            "event_time": "2026-11-23T10:00:00.000000Z",
            "subject": {"type": "communication", "id": CID},
            "details": {"remote": {"host": "mx.customer.example", "kind": kind}},
        }
    )


def test_delivered_and_relayed_read_the_same_from_either_catalogue() -> None:
    smarthost = record("RelayToNonERDS", remote={"host": "relay.acme.example", "kind": "smarthost"})
    mx = record("RelayToNonERDS", remote={"host": "mx.customer.example", "kind": "mx"})
    old_mx = _legacy("ContentConsignment", "D.1", "D", "mx")
    old_relay = _legacy("RelayAcceptance", "B.1", "B", "smarthost")
    got = [
        (e.type, e.data["status"]) for e in events_for_records([mx, smarthost, old_mx, old_relay])
    ]
    assert got == [
        ("sealpost.communication.delivered", "delivered"),
        ("sealpost.communication.relayed", "relayed"),
        ("sealpost.communication.delivered", "delivered"),
        ("sealpost.communication.relayed", "relayed"),
    ]
    # in catalogue 2, ContentConsignment keeps the standard's meaning: not a mail server's 250
    assert events_for_records([record("ContentConsignment")]) == []


def test_expiry_and_bounce_are_told_apart() -> None:
    expired = record("NonDelivery", reasons=(Reason("expired", "not delivered within 24 h"),))
    bounced = record(
        "NonDelivery",
        reasons=(Reason("dsn-5.1.1", "user unknown"),),
        dsn={"status": "5.1.1"},
        after_status="delivered",
    )
    refused = record("NonDelivery", reasons=(Reason("smtp-550", "550 no"),), reply="550 no")
    types = [e.type for e in events_for_records([expired, bounced, refused])]
    assert types == [
        "sealpost.communication.expired",
        "sealpost.communication.failed",
        "sealpost.communication.failed",
    ]
    bounce = events_for_records([bounced])[0]
    assert bounce.data["after_status"] == "delivered"
    assert bounce.data["reasons"] == [{"code": "dsn-5.1.1", "text": "user unknown"}]
    assert bounce.data["dsn"] == {"status": "5.1.1"}


def test_certificate_and_rejection_events() -> None:
    issued = record("CertificateIssued", version=2, sha256="b" * 64, size=9, status="failed")
    event = events_for_records([issued])[0]
    assert event.type == "sealpost.communication.certificate_issued"
    assert event.data["status"] == "failed"
    assert event.data["certificate"]["url"] == (
        f"/v1/communications/{CID}/certificate.pdf?version=2"
    )
    rejection = new_record(
        tenant_id="t1",
        event="SubmissionRejection",
        subject=Subject("submission", "s9"),
        sender=Party("x@evil.example"),
        reasons=(Reason("policy", "From must be an address of acme.example"),),
        details={"recipients": ["a@b.example"]},
    )
    rejected = events_for_records([rejection])[0]
    assert rejected.type == "sealpost.submission.rejected"
    assert rejected.subject == "submissions/s9"
    assert rejected.data["recipients"] == ["a@b.example"]


def test_envelope_is_cloudevents_1_0_with_a_sortable_sequence() -> None:
    event = events_for_records([record("DelayWarning", reasons=(Reason("delayed", "12 h"),))])[0]
    body = json.loads(encode(envelope(event, 7)))
    assert body["specversion"] == "1.0"
    assert body["id"] == event.id
    assert body["source"] == "/tenants/t1"
    assert body["type"] == "sealpost.communication.delayed"
    assert body["subject"] == f"communications/{CID}"
    assert body["time"] == "2026-11-23T10:00:00.000000Z"
    assert body["datacontenttype"] == "application/json"
    assert body["sequence"] == "00000000000000000007"
    assert body["sequence"] < "00000000000000000010"  # lexicographic = numeric order


def test_filters() -> None:
    assert matches([], "sealpost.communication.delivered")
    assert matches(["*"], "sealpost.submission.rejected")
    assert matches(["sealpost.communication.*"], "sealpost.communication.failed")
    assert not matches(["sealpost.communication.*"], "sealpost.submission.rejected")
    assert not matches(["sealpost.communication.delivered"], "sealpost.communication.failed")
    assert valid_pattern("sealpost.communication.*")
    assert valid_pattern("sealpost.communication.expired")
    assert not valid_pattern("sealpost.communication.opened.*")
    assert not valid_pattern("communication.delivered")
    with pytest.raises(KeyError):
        new_event(
            tenant_id="t",
            type="sealpost.nope",
            subject_type="communication",
            subject_id="x",
            time=T0,
            data={},
        )
    assert all(k.startswith("sealpost.") for k in (k.type for k in REGISTRY.kinds))


def test_retry_schedule_covers_the_window_and_ends_at_its_end() -> None:
    rng = random.Random(7)
    start = T0
    deadline = start + timedelta(hours=24)
    now, attempts, times = start, 0, []
    while True:
        attempts += 1
        nxt = next_attempt_at(attempts, now, deadline, initial_seconds=5, max_seconds=7200, rng=rng)
        if nxt is None:
            break
        assert nxt > now
        times.append(nxt)
        now = nxt
    gaps = [(b - a).total_seconds() for a, b in zip([start, *times], times, strict=False)]
    assert gaps[0] <= 5 and gaps[1] <= 10  # starts fast ...
    assert max(gaps) <= 7200  # ... never waits more than the cap ...
    assert times[-1] == deadline  # ... and the last attempt is at the 24th hour
    assert 15 <= attempts <= 40
    # jitter: two senders retrying the same failure do not hit the endpoint in step
    a = next_attempt_at(6, start, deadline, initial_seconds=5, max_seconds=7200, rng=rng)
    b = next_attempt_at(6, start, deadline, initial_seconds=5, max_seconds=7200, rng=rng)
    assert a != b
    assert a is not None and timedelta(seconds=80) <= a - start <= timedelta(seconds=160)


def test_event_ids_are_time_ordered_uuid7() -> None:
    import uuid

    from sealpost.events.registry import new_event_id

    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis)  # the index on event ids only ever grows at its end
    assert abs(millis[-1] - int(time.time() * 1000)) < 5000


def test_opening_events_are_first_by_construction() -> None:
    from sealpost.events.registry import REGISTRY

    openers = {k.type for k in REGISTRY.kinds if k.opens_subject}
    assert openers == {
        "sealpost.communication.accepted",
        "sealpost.submission.rejected",
        "sealpost.signature.created",
        "sealpost.sms.accepted",
        "sealpost.sequence.enrolled",
        "sealpost.archive.message_archived",
        "sealpost.archive.hold_placed",
        "sealpost.archive.export_created",
    }
    assert {
        "communication",
        "submission",
        "signature_process",
        "sms",
        "enrolment",
        "archive_message",
        "archive_hold",
        "archive_export",
    } == REGISTRY.opened_subjects
