"""The sealed sequence report: it validates in pyHanko and in poppler's pdfsig, shows every step,
its evidence and the stop cause, and never claims more than the evidence."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp

from sealpost.certificates.pades.validation import check_signatures
from sealpost.certificates.seal import validation_context
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from sealpost.sequences.report import (
    REPORT_NAME,
    EvidenceRef,
    ReportStep,
    SequenceReport,
    render_pdf,
    render_report,
    step_outcome,
)
from tests.certificates.support import poppler


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


REPORT = SequenceReport(
    tenant_name="Cobros Ejemplo S.L.",
    sequence_id="seq_01JABCDEF",
    sequence_name="Deuda 30 días",
    sequence_version=3,
    enrolment_id="enr_7f3a2b",
    person_name="Núria Puig i Ferrer",
    person_contact="+34612345678, nuria@example.cat",
    variant="challenger_a",
    enrolled_at=at(1, 9),
    stopped_at=at(4, 12, 30),
    stop_cause="paid",
    steps=(
        ReportStep(
            number=1,
            channel="sms",
            variant="challenger_a",
            planned_at=at(1, 9),
            sent_at=at(1, 9, 1),
            status="delivered",
            message_id="sms_111aaa",
            recipient="+34612345678",
            evidence=[
                ("rec_sms_dlr", "DeliveryReported", at(1, 9, 2)),
                ("rec_sms_sub", "SubmissionAcceptance", at(1, 9, 1)),
            ],
            certificate="certificate v2 of communication sms_111aaa, SHA-256 " + "ab" * 32,
        ),
        ReportStep(
            number=2,
            channel="email",
            variant="challenger_a",
            planned_at=at(3, 9),
            sent_at=at(3, 9, 0),
            status="delivered",
            message_id="com_222bbb",
            recipient="nuria@example.cat",
            evidence=[
                EvidenceRef("rec_mail_sub", "SubmissionAcceptance", at(3, 9)),
                EvidenceRef("rec_mail_250", "RelayToNonERDS", at(3, 9, 0)),
                EvidenceRef(
                    "rec_mail_open", "urn:sealpost:event:ContentAccessTracking", at(3, 9, 5)
                ),
            ],
            certificate="certificate v1 of communication com_222bbb, SHA-256 " + "cd" * 32,
            deadline="the 10-business-day term in ES-CT ends on 2026-12-18",
        ),
        ReportStep(
            number=3,
            channel="certified_email",
            variant="challenger_a",
            planned_at=at(7, 9),
            sent_at=None,
            status="cancelled",
            message_id=None,
            recipient=None,
        ),
    ),
    generated_at=at(7, 10),
    evidence=[
        ("rec_stop", "urn:sealpost:event:SequenceStopped", at(4, 12, 30)),
        ("rec_enrol", "urn:sealpost:event:SequenceEnrolled", at(1, 9)),
    ],
)


@pytest.fixture(scope="module")
def sealed(identities: LocalIdentities, timestamper: TimeStamper) -> bytes:
    return render_report(
        REPORT, seal=identities.seal, timestamper=timestamper, trust_roots=[identities.root]
    )


def text_of(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", "-layout", path, "-")
    assert result.returncode == 0, result.stderr
    return re.sub(r"\s+", " ", result.stdout)


def test_pyhanko_validates_the_seal_and_the_document_timestamp(
    sealed: bytes, root: x509.Certificate
) -> None:
    reader = PdfFileReader(io.BytesIO(sealed))
    seal, archive = reader.embedded_signatures
    context = validation_context([root])
    status = validate_pdf_signature(seal, context, context)
    assert status.bottom_line, status.pretty_print_details()
    assert status.intact and status.valid and status.trusted
    assert status.signing_cert.subject.native["common_name"] == "Sealpost Evidence Seal"
    stamp = validate_pdf_timestamp(archive, validation_context=validation_context([root]))
    assert stamp.intact and stamp.valid and stamp.trusted
    checks = check_signatures(sealed, [root])
    assert [c.field for c in checks] == ["SealpostSeal", "SealpostArchiveTimestamp"]
    assert all(c.ok for c in checks), checks


def test_pdfsig_says_the_seal_is_valid(sealed: bytes, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(sealed)
    result = poppler("pdfsig", path)
    assert result.returncode == 0, result.stdout + result.stderr
    seal = result.stdout.split("Signature #2")[0]
    assert "Signature Field Name: SealpostSeal" in seal
    assert "Signature is Valid" in seal
    assert "Total document signed" in result.stdout


def test_a_changed_byte_breaks_the_seal(sealed: bytes, root: x509.Certificate) -> None:
    spot = sealed.index(b"stream\n") + 40  # inside the first page's content
    forged = sealed[:spot] + bytes([sealed[spot] ^ 1]) + sealed[spot + 1 :]
    checks = check_signatures(forged, [root])
    assert not all(c.ok for c in checks)


def test_the_text_shows_each_step_its_evidence_and_the_stop_cause(
    sealed: bytes, tmp_path: Path
) -> None:
    text = text_of(sealed, tmp_path)
    assert "Sequence report — Deuda 30 días" in text
    assert "Núria Puig i Ferrer" in text and "enr_7f3a2b" in text and "version 3" in text
    assert "Step 1 — SMS" in text and "Step 2 — email" in text
    assert "Step 3 — certified email" in text
    assert "reported delivered by the operator (2026-12-01 09:02:00 UTC)" in text
    assert "accepted by the recipient's mail server (2026-12-03 09:00:00 UTC)" in text
    assert "not sent (cancelled)" in text
    for record in ("rec_sms_dlr", "rec_sms_sub", "rec_mail_sub", "rec_mail_250", "rec_mail_open"):
        assert record in text
    assert "certificate v2 of communication sms_111aaa" in text
    assert "the 10-business-day term in ES-CT ends on 2026-12-18" in text
    assert "Stop cause the debt was marked paid through the API" in text
    assert "No step listed here was sent after that time" in text
    assert "Steps never sent: 3" in text
    assert "1. SequenceEnrolled — 2026-12-01 09:00:00 UTC" in text
    assert "the sequence recorded its stop and the cause" in text and "rec_stop" in text
    assert "non-essential" in text


def test_the_words_never_claim_a_reading(sealed: bytes, tmp_path: Path) -> None:
    text = text_of(sealed, tmp_path).lower()
    for claim in re.findall(r"[^.]*\bread\b[^.]*", text):
        assert "not necessarily read" in claim or "never proof of reading" in claim, claim
    assert "was read" not in text and "opened by the recipient" not in text


def test_the_report_data_is_attached_as_json(sealed: bytes) -> None:
    reader = PdfFileReader(io.BytesIO(sealed))
    names = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    assert names[0] == REPORT_NAME
    data = json.loads(names[1].get_object()["/EF"]["/F"].get_object().data)
    assert data["enrolment"]["stop_cause"] == "paid"
    assert [s["outcome"] for s in data["steps"]] == [
        "reported delivered by the operator (2026-12-01 09:02:00 UTC)",
        "accepted by the recipient's mail server (2026-12-03 09:00:00 UTC)",
        "not sent (cancelled)",
    ]
    assert data["steps"][0]["evidence"][0]["record_id"] == "rec_sms_sub"  # sorted by time
    assert [e["record_id"] for e in data["evidence"]] == ["rec_enrol", "rec_stop"]


def test_outcomes_follow_the_strongest_evidence_only() -> None:
    def step(*events: str, relayed: bool = False) -> ReportStep:
        refs = [EvidenceRef(f"r{n}", e, at(1, 9, n), relayed) for n, e in enumerate(events)]
        return ReportStep(1, "certified_email_pickup", None, None, at(1, 9), "sent", "c", "x", refs)

    assert step("SubmissionAcceptance").evidence[0].event == "SubmissionAcceptance"
    assert step_outcome(step("SubmissionAcceptance")).startswith("accepted for sending")
    assert step_outcome(step("SubmissionAcceptance", "RelayToNonERDS", relayed=True)) == (
        "accepted by a relay mail server (the recipient's server not shown)"
    )
    assert step_outcome(
        step("SubmissionAcceptance", "ConsignmentNotification", "ConsignmentAcceptance")
    ).startswith("accepted by the identified recipient")
    assert step_outcome(step("SubmissionAcceptance", "NonDelivery")).startswith("not delivered")
    assert step_outcome(step("urn:sealpost:event:SequenceStepSent")).startswith(
        "submitted by the sequence"
    )
    assert step_outcome(step("urn:sealpost:event:SomethingNew")) == (
        "sent; no evidence record listed"
    )


def test_rendering_is_deterministic_for_given_data() -> None:
    assert render_pdf(REPORT) == render_pdf(REPORT)
