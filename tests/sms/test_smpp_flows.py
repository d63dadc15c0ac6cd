"""Certified SMS end to end over SMPP 3.4, against a real SMSC peer on 127.0.0.1."""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import pytest

from sealpost.sms.providers import DeliveryReport
from tests.sms.conftest import SmsEnv
from tests.support.smsc import Outcome

DELIVERED_TO = "+34612345678"


def _events(env: SmsEnv, sms_id: str) -> list[str]:
    return [e.event for e in env.sp.sms_repository.timeline(env.tenant_id, sms_id)]


def _records(env: SmsEnv, sms_id: str) -> dict[str, dict[str, object]]:
    return {e.event: e.record for e in env.sp.sms_repository.timeline(env.tenant_id, sms_id)}


def test_submitted_then_a_receipt_per_segment_then_delivered_with_evidence(
    sms_env: SmsEnv,
) -> None:
    text = "Estimado cliente, le recordamos que su recibo vence mañana. " * 3  # 2 GSM-7 parts
    sms_id = sms_env.send(DELIVERED_TO, text)
    sms_env.wait_status(sms_id, "delivered")
    assert _events(sms_env, sms_id) == [
        "SubmissionAcceptance",
        "RelayToNonERDS",
        "DeliveryReported",
    ]
    taken = sms_env.smsc.taken("34612345678")
    assert [t.part[1:] if t.part else None for t in taken] == [(2, 1), (2, 2)]
    assert all(t.data_coding == 0 for t in taken)
    detail = sms_env.detail(sms_id)
    segments = detail["segments"]
    assert isinstance(segments, list)
    assert [s["operator_message_id"] for s in segments] == [t.message_id for t in taken]
    assert [s["state"] for s in segments] == ["delivered", "delivered"]
    records = _records(sms_env, sms_id)
    relay = records["RelayToNonERDS"]["details"]
    assert isinstance(relay, dict)
    assert [s["operator_message_id"] for s in relay["segments"]] == [t.message_id for t in taken]
    delivered = records["DeliveryReported"]
    assert delivered["event"]["uri"] == "urn:sealpost:event:DeliveryReported"  # type: ignore[index]
    details = delivered["details"]
    assert isinstance(details, dict)
    for segment, taken_one in zip(details["segments"], taken, strict=True):
        (raw,) = sms_env.sp.sms_repository.reports("smpp", taken_one.message_id)
        assert segment["report_sha256"] == hashlib.sha256(raw.raw).hexdigest()
        assert f"id:{taken_one.message_id}".encode() in raw.raw and b"stat:DELIVRD" in raw.raw
    assert [e["event"] for e in detail["evidence"]] == list(records)  # type: ignore[union-attr]


def test_a_four_segment_ucs2_message(sms_env: SmsEnv) -> None:
    text = "Notificación de su expediente número 42: está disponible. " * 4
    preview = sms_env.client.post(
        "/v1/sms/preview", json={"text": text}, headers=sms_env.auth
    ).json()
    assert (preview["encoding"], preview["segments"]) == ("ucs2", 4)
    sms_id = sms_env.send(DELIVERED_TO, text)
    sms = sms_env.wait_status(sms_id, "delivered")
    assert (sms.encoding, sms.segment_count) == ("ucs2", 4)
    taken = sms_env.smsc.taken("34612345678")
    assert len({t.part[0] for t in taken if t.part}) == 1  # one concatenation reference
    assert [t.part[1:] for t in taken if t.part] == [(4, 1), (4, 2), (4, 3), (4, 4)]
    assert all(t.data_coding == 8 for t in taken)
    assert b"".join(t.text for t in taken).decode("utf-16-be") == text  # reassembled
    assert len({t.message_id for t in taken}) == 4


def test_throttled_then_delivered(sms_env: SmsEnv) -> None:
    sms_env.smsc.script["34612345679"] = Outcome("throttled", throttle=2)
    sms_id = sms_env.send("+34612345679", "hola")
    sms = sms_env.wait_status(sms_id, "delivered")
    assert sms.attempts == 3  # two ESME_RTHROTTLED answers, waited out with backoff
    assert len(sms_env.smsc.taken("34612345679")) == 1
    assert _events(sms_env, sms_id) == [
        "SubmissionAcceptance",
        "RelayToNonERDS",
        "DeliveryReported",
    ]


def test_invalid_destination_fails_with_the_operator_status(sms_env: SmsEnv) -> None:
    sms_env.smsc.script["34612345670"] = Outcome("invalid")
    sms_id = sms_env.send("+34612345670", "hola")
    sms_env.wait_status(sms_id, "failed")
    failure = _records(sms_env, sms_id)["RelayToNonERDSFailure"]
    (reason,) = failure["reasons"]  # type: ignore[misc]
    assert reason["code"] == "0x0000000B"
    assert "destination" in reason["text"].lower()
    assert _events(sms_env, sms_id) == ["SubmissionAcceptance", "RelayToNonERDSFailure"]


@pytest.mark.parametrize("kind", ["undelivered", "expired"])
def test_a_bad_final_receipt_is_non_delivery_with_the_reason(sms_env: SmsEnv, kind: str) -> None:
    sms_env.smsc.script["34612345671"] = Outcome(kind, err="034")
    sms_id = sms_env.send("+34612345671", "hola")
    sms_env.wait_status(sms_id, "undelivered")
    non_delivery = _records(sms_env, sms_id)["NonDelivery"]
    (reason,) = non_delivery["reasons"]  # type: ignore[misc]
    assert reason["code"] == kind and "034" in reason["text"]


def test_duplicate_and_out_of_order_receipts_change_nothing_twice(sms_env: SmsEnv) -> None:
    sms_env.smsc.script["34612345672"] = Outcome("duplicate")
    sms_id = sms_env.send("+34612345672", "hola")
    sms_env.wait_status(sms_id, "delivered")
    sms_env.wait_for(sms_id, lambda _: not sms_env.smsc.pending, timeout=10)  # all acknowledged
    (segment,) = sms_env.sp.sms_repository.segments(sms_id)
    assert segment.state == "delivered"  # the ENROUTE after DELIVRD did not undo it
    stored = sms_env.sp.sms_repository.reports("smpp", segment.message_id or "")
    assert len(stored) == 2  # DELIVRD once (its duplicate is the same bytes) and ENROUTE
    # a report handed in again by an adapter (an HTTP retry, say) is a no-op too
    sms_env.sp.sms.report(
        DeliveryReport(
            "smpp", segment.message_id or "", "undelivered", segment.reported_at, raw=b"x"
        )  # type: ignore[arg-type]
    )
    assert _events(sms_env, sms_id) == [
        "SubmissionAcceptance",
        "RelayToNonERDS",
        "DeliveryReported",
    ]
    assert sms_env.sp.sms_repository.get(sms_id).status == "delivered"  # type: ignore[union-attr]


@pytest.mark.parametrize("sms_overrides", [{"sms_unconfirmed_after_seconds": 1.0}])
def test_no_receipt_is_unconfirmed_after_the_timeout_never_delivered(sms_env: SmsEnv) -> None:
    sms_env.smsc.script["34612345673"] = Outcome("silent")
    sms_id = sms_env.send("+34612345673", "hola")
    sms_env.wait_status(sms_id, "submitted")
    sms = sms_env.wait_status(sms_id, "unconfirmed", timeout=10)
    assert sms.final_at is not None and sms.relayed_at is not None
    assert (sms.final_at - sms.relayed_at).total_seconds() >= 1.0
    record = _records(sms_env, sms_id)["DeliveryUnconfirmed"]
    assert record["reasons"][0]["code"] == "no_receipt"  # type: ignore[index]
    assert "DeliveryReported" not in _events(sms_env, sms_id)


def test_smsc_restarted_mid_stream_nothing_lost_nothing_duplicated(sms_env: SmsEnv) -> None:
    """Before: SMS submitted, receipts still due; down: SMS wait with the error; back: all
    delivered (the receipts kept by the SMSC arrive on the new bind), no segment twice."""
    smsc = sms_env.smsc
    smsc.receipt_delay = 0.3  # receipts still owed when the SMSC goes down
    ids = [sms_env.send(f"+3461234{i:04d}", f"antes {i} " * (1 + i % 3 * 10)) for i in range(10)]
    sms_env.wait_for(ids[-1], lambda s: s.status == "submitted")
    smsc.down()
    during = [sms_env.send(f"+3461235{i:04d}", f"durante {i}") for i in range(5)]
    for sms_id in during:
        waiting = sms_env.wait_for(sms_id, lambda s: s.last_error is not None)
        assert waiting.status == "queued"
    smsc.up()
    after = [sms_env.send(f"+3461236{i:04d}", f"después {i} " * 20) for i in range(10)]
    for sms_id in ids + during + after:
        sms_env.wait_status(sms_id, "delivered", timeout=30)
    counts = Counter((t.destination, t.part) for t in smsc.submissions)
    assert max(counts.values()) == 1, "a segment was submitted twice"
    assert len(counts) == sum(
        s.segment_count for s in map(sms_env.sp.sms_repository.get, ids + during + after) if s
    )
    assert smsc.binds >= 2  # the adapter bound again after the restart
    for sms_id in ids + during + after:
        assert _events(sms_env, sms_id) == [
            "SubmissionAcceptance",
            "RelayToNonERDS",
            "DeliveryReported",
        ]


@pytest.mark.parametrize("sms_overrides", [{"smpp_enquire_link_seconds": 0.2}])
def test_an_idle_bind_is_kept_with_enquire_link(sms_env: SmsEnv) -> None:
    deadline = time.monotonic() + 10
    while sms_env.smsc.binds < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = sms_env.smsc.enquire_links
    time.sleep(1.0)
    assert sms_env.smsc.enquire_links - before >= 3  # about one per 0.2 s of silence
    assert sms_env.smsc.binds == 1  # the same bind, kept alive
    sms_id = sms_env.send(DELIVERED_TO, "sigue vivo")
    sms_env.wait_status(sms_id, "delivered")


def test_the_certificate_says_the_operator_reported_delivery_and_verifies(
    sms_env: SmsEnv,
) -> None:
    import pypdfium2 as pdfium

    from sealpost.certificates.verify import verify_certificate_pdf

    sms_env.sp.start_background()  # the sequencer seals the records
    text = "Su expediente 1234 está resuelto. " * 5  # UCS-2, 3 segments
    sms_id = sms_env.send(DELIVERED_TO, text)
    early = sms_env.client.get(f"/v1/sms/{sms_id}/certificate.pdf", headers=sms_env.auth)
    sms_env.wait_status(sms_id, "delivered")
    assert early.status_code == 409  # before its outcome, there is nothing to certify
    deadline = time.monotonic() + 20
    while True:
        answer = sms_env.client.get(f"/v1/sms/{sms_id}/certificate.pdf", headers=sms_env.auth)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        assert answer.status_code == 409, answer.text  # sealing under way
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    report = verify_certificate_pdf(answer.content, trust_roots=sms_env.sp.trust_roots)
    assert report.ok, report.failures
    assert report.attachments["original.txt"] == text.encode()
    document = pdfium.PdfDocument(answer.content)
    words = (
        " ".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
        .replace("\r\n", " ")
        .replace("\n", " ")
    )
    document.close()
    assert "certified SMS" in words
    assert "The operator reported delivery to the handset at 20" in words
    assert "took every segment" in words and "only that the operator took it" in words


def test_the_certificate_loop_issues_a_recorded_versioned_certificate(sms_env: SmsEnv) -> None:
    """Like email's: issued by the loop once the SMS is final and sealed (nobody asked for
    it), stored, recorded with CertificateIssued, listed by GET /v1/sms/{id}."""
    import hashlib as _hashlib

    sms_env.sp.start_background()  # the sequencer seals the records
    sms_id = sms_env.send(DELIVERED_TO, "Su cita es mañana a las 10:00.")
    sms_env.wait_status(sms_id, "delivered")
    deadline = time.monotonic() + 30
    while "CertificateIssued" not in _events(sms_env, sms_id):
        assert time.monotonic() < deadline, "no certificate issued by the loop"
        time.sleep(0.2)
    detail = sms_env.detail(sms_id)
    (listed,) = detail["certificates"]  # type: ignore[misc]
    assert listed["version"] == 1
    issued = _records(sms_env, sms_id)["CertificateIssued"]
    assert issued["details"]["sha256"] == listed["sha256"]  # type: ignore[index]
    assert listed["record_id"] == issued["id"]
    assert _events(sms_env, sms_id)[-1] == "CertificateIssued"
    pdf = sms_env.client.get(listed["path"], headers=sms_env.auth)
    assert pdf.status_code == 200
    assert _hashlib.sha256(pdf.content).hexdigest() == listed["sha256"]
    latest = sms_env.client.get(f"/v1/sms/{sms_id}/certificate.pdf", headers=sms_env.auth)
    assert latest.content == pdf.content  # the stored version, not a new one each time
    missing = sms_env.client.get(
        f"/v1/sms/{sms_id}/certificate.pdf?version=2", headers=sms_env.auth
    )
    assert missing.status_code == 404
    assert len(sms_env.detail(sms_id)["certificates"]) == 1  # type: ignore[arg-type]
