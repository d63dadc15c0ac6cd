"""The audit-trail PDF: every fact on the pages, whatever the length, sealed like a certificate."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.certificates import fonts, seal_pdf
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from sealpost.signatures.audit import (
    AuditDocument,
    AuditEntry,
    AuditRevision,
    AuditSigner,
    AuditTrail,
    render_audit_trail,
)
from tests.certificates.support import poppler
from tests.conftest import require_service

T0 = datetime(2026, 3, 1, 9, 30, 5, 123456, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EVENTS = (
    "ProcessCreated",
    "SignerNotified",
    "SignerIdentified",
    "DocumentSigned",
    "ProcessCompleted",
    "ProcessDeclined",
)
SIGNERS = (
    AuditSigner(
        "Zoë Ødegård", "zoe@example.no", "+47 912 34 567", "signer", 1, "email OTP", "signed",
        T0 + timedelta(minutes=20),
    ),
    AuditSigner(
        "Łukasz Żółkiewski", "lukasz@example.pl", None, "approver", 2, "SMS OTP", "signed",
        T0 + timedelta(minutes=40),
    ),
    AuditSigner(
        "Δημήτρης Παπαδόπουλος", None, "+30 690 000 0000", "witness", 2, "SMS OTP", "pending",
        None,
    ),
)  # fmt: skip
DOCUMENTS = (
    AuditDocument(
        "Employment contract.pdf",
        3,
        "1" * 64,
        "3" * 64,
        (
            AuditRevision("Zoë Ødegård", T0 + timedelta(minutes=20), "1" * 64, "2" * 64),
            AuditRevision("Łukasz Żółkiewski", T0 + timedelta(minutes=40), "2" * 64, "3" * 64),
        ),
    ),
    AuditDocument("Annex A.pdf", 1, "4" * 64, None, ()),
)
CONSENT = (
    "I agree to sign these documents electronically and understand that my electronic "
    "signature has the same legal effect as a handwritten one."
)


def _entries(count: int, user_agent: str = CHROME) -> tuple[AuditEntry, ...]:
    return tuple(
        AuditEntry(
            time=T0 + timedelta(seconds=37 * n),
            event=EVENTS[n % len(EVENTS)],
            actor="Zoë Ødegård <zoe@example.no>" if n % 2 else "Łukasz Żółkiewski",
            ip="2001:db8::17" if n % 3 else f"192.0.2.{n % 250}",
            user_agent=user_agent,
            identification="email OTP" if n % 2 else None,
            details=f"step {n}: page 1, field signature:1",
            record_id=f"rec_{n:04d}_01JNX8Y7ZQ",
        )
        for n in range(count)
    )


def _trail(entries: tuple[AuditEntry, ...] | None = None, **changes: object) -> AuditTrail:
    trail = AuditTrail(
        process_id="sp_01JNX8Y7ZQ4K",
        tenant="Acme Ltd",
        title="Hiring: Zoë Ødegård",
        status="completed",
        created_at=T0,
        completed_at=T0 + timedelta(minutes=40, seconds=1),
        consent_text=CONSENT,
        consent_sha256="c" * 64,
        ledger_origin="test.sealpost.local/ledger",
        signers=SIGNERS,
        documents=DOCUMENTS,
        entries=_entries(12) if entries is None else entries,
    )
    return replace(trail, **changes)  # type: ignore[arg-type]


def _text(pdf: bytes, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "audit.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", *args, path, "-")
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pages(pdf: bytes) -> int:
    return int(PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Count"])


def test_the_pages_show_the_process_its_signers_documents_entries_and_consent(
    tmp_path: Path,
) -> None:
    trail = _trail()
    text = _text(render_audit_trail(trail), tmp_path)
    flat = " ".join(text.split())
    assert "Audit trail — signature process sp_01JNX8Y7ZQ4K" in flat
    for fact in ("Acme Ltd", "Hiring: Zoë Ødegård", "completed", "test.sealpost.local/ledger"):
        assert fact in flat
    assert "2026-03-01T09:30:05Z" in flat and "2026-03-01T10:10:06Z" in flat  # created, done
    for signer in SIGNERS:
        assert signer.name in flat and signer.role in flat and signer.identification in flat
    assert "zoe@example.no" in flat and "+30 690 000 0000" in flat and "not signed" in flat
    for document in DOCUMENTS:
        assert document.name in flat and document.sha256_original in flat
    for digest in ("2" * 64, "3" * 64):  # before and after each signature, and the final
        assert digest in flat
    assert "none yet: not every signature has been applied" in flat
    for n, entry in enumerate(trail.entries, start=1):
        assert f"{n}. {entry.time.strftime('%Y-%m-%dT%H:%M:%SZ')} — {entry.event}" in flat
        assert entry.details in flat and entry.record_id is not None
        assert entry.record_id in flat
    assert "192.0.2.0" in flat and "2001:db8::17" in flat
    assert "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36" in flat
    assert CONSENT in flat and "c" * 64 in flat
    assert "GET /v1/evidence/{record_id}" in flat and "sealpost verify" in flat


def test_missing_values_are_said_to_be_missing(tmp_path: Path) -> None:
    entry = AuditEntry(T0, "ReminderSent", "Sealpost", None, None, None, "by email", None)
    text = " ".join(_text(render_audit_trail(_trail((entry,))), tmp_path).split())
    assert "IP address — (not recorded)" in text and "User agent — (not recorded)" in text
    assert "Evidence record none" in text


def test_non_latin_names_are_drawn_not_replaced(tmp_path: Path) -> None:
    if fonts._find("DejaVuSans.ttf") is None:
        require_service("DejaVu fonts", "install fonts-dejavu-core")
    pdf = render_audit_trail(_trail())
    text = _text(pdf, tmp_path)
    for name in ("Zoë Ødegård", "Łukasz Żółkiewski", "Δημήτρης Παπαδόπουλος"):
        assert name in text
    assert "<U+" not in text
    assert "DejaVuSans" in poppler("pdffonts", tmp_path / "audit.pdf").stdout


def test_two_hundred_entries_and_a_long_user_agent_paginate_without_losing_text(
    tmp_path: Path,
) -> None:
    user_agent = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) Build/UP1A.231005.007 " * 7)[:393]
    user_agent += " UA-END"
    assert len(user_agent) == 400
    trail = _trail(_entries(200, user_agent))
    pdf = render_audit_trail(trail)
    pages = _pages(pdf)
    assert pages > 1
    text = _text(pdf, tmp_path)
    assert f"page {pages}/{pages}" in text
    ids = set(re.findall(r"rec_\d{4}_01JNX8Y7ZQ", text))
    assert ids == {e.record_id for e in trail.entries}
    assert text.count("UA-END") == 200  # the end of every user agent made it onto a page
    # And all of it, in order (-layout: plain mode reorders the words of justified lines).
    flat = " ".join(_text(pdf, tmp_path, "-layout").split())
    assert flat.count(" ".join(user_agent.split())) == 200
    assert f"200. 2026-03-01T11:32:48Z — {trail.entries[-1].event}" in flat


def test_times_are_shown_in_utc_to_the_second(tmp_path: Path) -> None:
    paris = timezone(timedelta(hours=2))
    entry = replace(_entries(1)[0], time=datetime(2026, 6, 1, 12, 0, 7, 999999, tzinfo=paris))
    text = _text(render_audit_trail(_trail((entry,))), tmp_path)
    assert "2026-06-01T10:00:07Z" in text
    assert ".999999" not in text and "+02:00" not in text


def test_a_time_without_a_zone_is_refused() -> None:
    naive = replace(_entries(1)[0], time=datetime(2026, 6, 1, 12, 0, 7))
    with pytest.raises(ValueError, match="timezone-aware"):
        render_audit_trail(_trail((naive,)))


def test_a_process_without_signers_documents_or_entries_renders(tmp_path: Path) -> None:
    trail = _trail((), signers=(), documents=(), completed_at=None, status="draft")
    text = _text(render_audit_trail(trail), tmp_path)
    assert "No event has been recorded yet." in text and "not completed" in text


def test_rendering_is_deterministic() -> None:
    assert render_audit_trail(_trail()) == render_audit_trail(_trail())


def test_the_metadata_names_the_process() -> None:
    info = PdfFileReader(io.BytesIO(render_audit_trail(_trail()))).trailer["/Info"]
    assert str(info["/Title"]) == "Audit trail — signature process sp_01JNX8Y7ZQ4K"
    assert str(info["/Author"]) == "Acme Ltd"


def test_the_sealed_audit_trail_validates_in_pdfsig(
    identities: LocalIdentities, timestamper: TimeStamper, tmp_path: Path
) -> None:
    sealed = seal_pdf(
        render_audit_trail(_trail(_entries(40))),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="Audit trail",
        location="Sealpost test",
    )
    path = tmp_path / "audit-sealed.pdf"
    path.write_bytes(sealed)
    result = poppler("pdfsig", path)
    assert result.returncode == 0, result.stdout + result.stderr
    seal = result.stdout.split("Signature #2")[0]
    assert "Signature Field Name: SealpostSeal" in seal
    assert "Signature is Valid" in seal
    assert "Total document signed" in result.stdout


def test_each_document_says_what_the_active_content_check_found(tmp_path: Path) -> None:
    allowed = (
        "found and accepted because the sender allows active content: the document runs "
        "JavaScript when it is opened; page 2 opens a program or a file when the page is opened"
    )
    documents = (
        replace(DOCUMENTS[0], active_content="no active content found"),
        replace(DOCUMENTS[1], active_content=allowed),
        AuditDocument("Before the check.pdf", 1, "5" * 64, None, ()),
    )
    text = " ".join(_text(render_audit_trail(_trail(documents=documents)), tmp_path).split())
    assert "Active content no active content found" in text
    assert f"Active content {allowed}" in text
    assert "Active content not checked (the process predates Sealpost" in text
    assert text.count("Active content ") == 3
