"""Helpers for certificate tests: a real communication, sealed in a real ledger."""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from sealpost.app import Sealpost
from sealpost.certificates import CertificateData, CertificateEvent
from sealpost.ledger.records import ContentInfo, ContentPart, Party, Reason, Subject, new_record
from tests.conftest import require_service

ORIGIN = "test.sealpost.local/ledger"


def make_eml(subject: str) -> tuple[bytes, tuple[tuple[str, str | None, str, int], ...]]:
    """A two-part message and the digest of each decoded part, as the email channel records."""
    msg = EmailMessage()
    msg["From"] = "Alice Sender <alice@example.com>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    msg.set_content("Please find the contract attached.\n")
    msg.add_attachment(
        b"%PDF-1.4 contract", maintype="application", subtype="pdf", filename="contract.pdf"
    )
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(
            (
                part.get_content_type(),
                part.get_filename(),
                hashlib.sha256(payload).hexdigest(),
                len(payload),
            )
        )
    return msg.as_bytes(policy=SMTP), tuple(parts)


@dataclass(frozen=True)
class Scenario:
    """How many events a certificate should carry, and whether the last is still unsealed."""

    subject: str = "Notice of termination"
    delays: int = 0
    unsealed_last: bool = False
    version: int = 1
    supersedes_sha256: str | None = None
    consignment: dict[str, object] | None = None
    """Extra details of the RelayToNonERDS record (the delivered copy's digests...)."""
    access_secret: bool = False
    """The SubmissionAcceptance says the message carried a single-use link or code."""


def make_certificate_data(sp: Sealpost, tenant_id: str, scenario: Scenario) -> CertificateData:
    """Append the records of one communication, seal them, and gather their real bundles."""
    eml, parts = make_eml(scenario.subject)
    digest = hashlib.sha256(eml).hexdigest()
    content = ContentInfo(
        digest, len(eml), tuple(ContentPart(ct, h, n, fn) for ct, fn, h, n in parts)
    )
    subject = Subject("communication", str(uuid.uuid4()))
    message_id = f"<{uuid.uuid4().hex}@example.com>"
    recipient = Party("bob@example.org")
    record = functools.partial(
        new_record, tenant_id=tenant_id, subject=subject, recipient=recipient
    )
    records = [
        record(
            event="SubmissionAcceptance",
            sender=Party(
                "alice@example.com",
                "Alice Sender",
                {"method": "smtp-auth", "username": "acme-mailer"},
            ),
            application_identifier=message_id,
            content=content,
            details={
                "smtp": {"reply": "250 2.0.0 queued", "client_ip": "127.0.0.1", "tls": "TLSv1.3"},
                **({"access_secret": True} if scenario.access_secret else {}),
            },
        )
    ]
    records += [
        record(
            event="DelayWarning",
            reasons=(Reason("smtp-4xx", f"451 4.7.1 greylisted, try again later (attempt {i})"),),
            details={"smtp": {"remote_host": "mx.example.org", "remote_ip": "192.0.2.1"}},
        )
        for i in range(1, scenario.delays + 1)
    ]
    records.append(
        record(
            event="RelayToNonERDS",
            content=content,
            details={
                "smtp": {
                    "remote_host": "mx.example.org",
                    "remote_ip": "192.0.2.1",
                    "reply": "250 2.0.0 Ok: queued as 4FzX",
                    "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
                },
                **(scenario.consignment or {}),
            },
        )
    )
    sp.log_storage.append(records)
    sp.sequencer.seal_all()
    bundles: list[dict[str, object] | None] = [sp.ledger.bundle(r.id, tenant_id) for r in records]
    if scenario.unsealed_last:
        late = record(event="ContentHandover", details={"portal": {"ip": "198.51.100.7"}})
        sp.log_storage.append([late])
        records.append(late)
        bundles.append(None)
    events = tuple(
        CertificateEvent(
            record_id=r.id,
            event=r.event.name,
            event_uri=r.event.uri,
            event_time=r.event_time,
            summary=_summary(r.event.name, dict(r.details)),
            details=dict(r.details),
            reasons=tuple((x.code, x.text) for x in r.reasons),
            bundle=b,
        )
        for r, b in zip(records, bundles, strict=True)
    )
    return CertificateData(
        communication_id=subject.id,
        tenant_name="Acme Legal",
        version=scenario.version,
        issued_at=datetime.now(UTC),
        status="delivered",
        sender="alice@example.com",
        sender_identification="SMTP AUTH user acme-mailer over TLSv1.3",
        recipient="bob@example.org",
        subject=scenario.subject,
        message_id=message_id,
        submitted_at=records[0].event_time,
        content_sha256=digest,
        content_size=len(eml),
        parts=parts,
        events=events,
        eml=eml,
        supersedes_sha256=scenario.supersedes_sha256,
        ledger_origin=ORIGIN,
        verify_hint="sealpost verify certificate.pdf --trust root-ca.pem",
    )


def _summary(event: str, details: dict[str, object]) -> str:
    smtp = details.get("smtp")
    if event == "RelayToNonERDS" and isinstance(smtp, dict):
        return f"Accepted by {smtp['remote_host']} [{smtp['remote_ip']}]: {smtp['reply']}"
    if event == "SubmissionAcceptance":
        return "Submitted by alice@example.com over SMTP (TLSv1.3)"
    return f"{event} recorded"


@dataclass(frozen=True)
class Sealed:
    """A genuine sealed certificate and the data it was rendered from."""

    data: CertificateData
    pdf: bytes


def poppler(tool: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run a poppler-utils tool; fails under SEALPOST_REQUIRE_SERVICES=1 when it is missing."""
    if shutil.which(tool) is None:
        require_service(tool, "install poppler-utils")
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=60)
