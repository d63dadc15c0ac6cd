"""A multi-part SMS resumes with only the segments the operator did not take (same
concatenation reference), and an SMS the operator never takes expires in the queue: against
the real SMSC peer on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sealpost.events.tables import outbox_events
from tests.sms.conftest import SmsEnv
from tests.support.smsc import Outcome

# 3 GSM-7 parts (153 + 153 + rest)
THREE_PARTS = "Le recordamos que su expediente 2024/118 sigue abierto. " * 7


def _events(env: SmsEnv, sms_id: str) -> list[str]:
    return [e.event for e in env.sp.sms_repository.timeline(env.tenant_id, sms_id)]


def _records(env: SmsEnv, sms_id: str) -> dict[str, dict[str, object]]:
    return {e.event: e.record for e in env.sp.sms_repository.timeline(env.tenant_id, sms_id)}


@pytest.mark.parametrize("sms_overrides", [{"smpp_partial_retry_seconds": 0.0}])
def test_segment_two_throttled_twice_every_segment_once_and_reassembled(
    sms_env: SmsEnv,
) -> None:
    """Segment 1 is taken, segment 2 is throttled (twice, on two attempts): the message
    waits, and the next attempts send segments 2 and 3 only, with segment 1's reference."""
    sms_env.smsc.script["34612340001"] = Outcome("throttled", throttle=2, part=2)
    sms_id = sms_env.send("+34612340001", THREE_PARTS)
    sms = sms_env.wait_status(sms_id, "delivered")
    assert sms.attempts == 3  # two attempts ended throttled, the third finished it
    taken = sms_env.smsc.taken("34612340001")
    parts = [t.part for t in taken]
    assert Counter(p[2] for p in parts if p) == {1: 1, 2: 1, 3: 1}, parts  # each exactly once
    assert len({p[0] for p in parts if p}) == 1  # one concatenation reference throughout
    assert {p[1] for p in parts if p} == {3}
    ordered = sorted(taken, key=lambda t: t.part or (0, 0, 0))
    assert b"".join(t.text for t in ordered).decode("latin-1") == THREE_PARTS  # reassembled
    relay = _records(sms_env, sms_id)["RelayToNonERDS"]["details"]
    assert isinstance(relay, dict)
    by_part = {t.part[2]: t.message_id for t in taken if t.part}
    assert [s["operator_message_id"] for s in relay["segments"]] == [
        by_part[1],
        by_part[2],
        by_part[3],
    ]
    assert relay["segments"][0]["taken_on_earlier_attempt"] is True
    assert "taken_on_earlier_attempt" not in relay["segments"][1]
    assert "sent_without_answer" not in relay  # nothing went out unanswered
    segments = sms_env.sp.sms_repository.segments(sms_id)
    assert [s.state for s in segments] == ["delivered"] * 3
    assert _events(sms_env, sms_id) == [
        "SubmissionAcceptance",
        "RelayToNonERDS",
        "DeliveryReported",
    ]


@pytest.mark.parametrize("sms_overrides", [{"smpp_partial_retry_seconds": 0.0}])
def test_a_response_lost_with_the_link_is_the_one_resend_and_the_evidence_says_so(
    sms_env: SmsEnv,
) -> None:
    """The SMSC takes segment 2 but the link drops before its answer: Sealpost cannot know
    (SMPP 3.4 has no idempotency key), sends it again, and the evidence says it did."""
    sms_env.smsc.script["34612340002"] = Outcome(lose_response=2)
    sms_id = sms_env.send("+34612340002", THREE_PARTS)
    sms_env.wait_status(sms_id, "submitted", "delivered")
    counts = Counter(t.part[2] for t in sms_env.smsc.taken("34612340002") if t.part)
    assert counts == {1: 1, 2: 2, 3: 1}  # segment 1 never again; 2 is the known window
    relay = _records(sms_env, sms_id)["RelayToNonERDS"]["details"]
    assert isinstance(relay, dict)
    assert relay["sent_without_answer"] == [2]
    assert "twice" in relay["at_least_once"]
    assert len(relay["segments"]) == 3 and all(s["operator_message_id"] for s in relay["segments"])
    (two,) = [s for s in sms_env.sp.sms_repository.segments(sms_id) if s.number == 1]
    assert two.unanswered == 1


def test_validity_period_is_passed_to_the_smsc(sms_env: SmsEnv) -> None:
    sms_id = sms_env.send("+34612340003", "hola")
    sms = sms_env.wait_status(sms_id, "delivered")
    (taken,) = sms_env.smsc.taken("34612340003")
    assert taken.validity.endswith("000+")  # SMPP 3.4 §7.1.1 absolute, UTC
    until = datetime.strptime(taken.validity[:12], "%y%m%d%H%M%S").replace(tzinfo=UTC)
    expected = sms.submitted_at + timedelta(seconds=86400)
    assert abs((until - expected).total_seconds()) < 2


@pytest.mark.parametrize("sms_overrides", [{"sms_validity_seconds": 2.0}])
def test_an_sms_the_operator_never_takes_expires_in_the_queue(sms_env: SmsEnv) -> None:
    """The SMSC is down for longer than the validity: the SMS fails (NonDelivery,
    expired_in_queue, with the last operator error) and is never sent when it comes back."""
    sms_env.smsc.down()
    sms_id = sms_env.send("+34612340004", "su cita es mañana")
    waiting = sms_env.wait_for(sms_id, lambda s: s.last_error is not None)
    seen = waiting.status == "queued"  # an attempt failed first (else a slow machine let the
    sms = sms_env.wait_status(sms_id, "failed", timeout=15)  # validity pass before one)
    assert sms.final_at is not None
    assert (sms.final_at - sms.submitted_at).total_seconds() >= 2.0
    assert _events(sms_env, sms_id) == ["SubmissionAcceptance", "NonDelivery"]
    record = _records(sms_env, sms_id)["NonDelivery"]
    reasons = record["reasons"]
    assert isinstance(reasons, list)
    assert reasons[0]["code"] == "expired_in_queue"
    if seen:
        assert reasons[1]["code"] == "unbound"  # the operator's last answer, as seen
    assert record["details"]["status"] == "failed"  # type: ignore[index]
    o = outbox_events.c
    with sms_env.sp.engine.connect() as conn:
        kinds = list(
            conn.execute(
                select(o.type).where(o.subject_id == sms_id).order_by(o.sequence)
            ).scalars()
        )
    assert kinds == ["sealpost.sms.accepted", "sealpost.sms.failed"]
    sms_env.smsc.up()
    detail = sms_env.detail(sms_id)
    assert detail["status"] == "failed"
    assert sms_env.smsc.taken("34612340004") == []


def test_receipts_applied_as_one_batch_decide_as_one_at_a_time_would(sms_env: SmsEnv) -> None:
    """Set-wise application: in one batch, segment 1 UNDELIV, segment 2 DELIVRD, then a late
    DELIVRD for segment 1 and a duplicate: the message is undelivered once (one NonDelivery,
    decided by the first bad receipt), segment 1 keeps its first final state, segment 2 its."""
    from sealpost.db.engine import write_transaction
    from sealpost.sms.repository import StoredReport

    sms_env.smsc.script["34612340005"] = Outcome("silent")  # taken, receipts are ours to send
    sms_id = sms_env.send("+34612340005", THREE_PARTS[:200])  # 2 GSM-7 parts
    sms_env.wait_status(sms_id, "submitted")
    one, two = sms_env.sp.sms_repository.segments(sms_id)
    at = datetime(2026, 12, 7, 9, 1, tzinfo=UTC)

    def report(message_id: str | None, state: str, raw: bytes) -> StoredReport:
        return StoredReport(
            sha256=raw.hex().ljust(64, "0")[:64],
            provider="smpp",
            message_id=message_id or "",
            state=state,
            status="034" if state != "delivered" else "000",
            reported_at=at,
            raw=raw,
        )

    batch = [
        report(one.message_id, "undelivered", b"\x01"),
        report(two.message_id, "delivered", b"\x02"),
        report(one.message_id, "delivered", b"\x03"),
        report(two.message_id, "enroute", b"\x04"),
    ]
    repo, service = sms_env.sp.sms_repository, sms_env.sp.sms
    with write_transaction(sms_env.sp.engine) as conn:
        stored = repo.store_reports_in(conn, [(r, at) for r in batch], service.decide)
    assert stored == [True] * 4
    assert repo.get(sms_id).status == "undelivered"  # type: ignore[union-attr]
    one, two = repo.segments(sms_id)
    assert (one.state, one.status, two.state) == ("undelivered", "034", "delivered")
    assert _events(sms_env, sms_id) == ["SubmissionAcceptance", "RelayToNonERDS", "NonDelivery"]
    record = _records(sms_env, sms_id)["NonDelivery"]
    assert [r["code"] for r in record["reasons"]] == ["undelivered"]  # type: ignore[union-attr]
    facts = record["details"]["segments"]  # type: ignore[index]
    assert [f["state"] for f in facts] == ["undelivered", "accepted"]  # as at the first receipt
    with write_transaction(sms_env.sp.engine) as conn:  # the same batch again: no-ops
        again = repo.store_reports_in(conn, [(r, at) for r in batch], service.decide)
    assert again == [False] * 4
    assert _events(sms_env, sms_id) == ["SubmissionAcceptance", "RelayToNonERDS", "NonDelivery"]
