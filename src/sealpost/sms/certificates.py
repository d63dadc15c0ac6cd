"""The evidence certificate of an SMS: the email certificate's toolkit, the SMS's story.

Issued as email's are (``communications/certificates.py``): once the SMS has a final status
and every record of it is sealed (each event's bundle is embedded, so the PDF verifies
offline with ``sealpost verify``), by the certificate loop or on the first download.  Each
version is stored (the PDF in the blob store) and recorded with a CertificateIssued evidence
record (version, SHA-256, what it supersedes); a later version names the SHA-256 of the one
before (``supersedes_sha256``) and carries its CertificateIssued record among its events.
The plain words never claim more than the evidence: RelayToNonERDS says the operator *took*
the SMS; only ``DeliveryReported`` says "the operator reported delivery to the handset at
...", with the latest segment receipt's done date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from sealpost.certificates.errors import SealError
from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.render import render_certificate
from sealpost.certificates.seal import seal_pdf
from sealpost.certificates.secrets import carries_access_secret
from sealpost.db.blobs import BlobMissing, BlobStorage
from sealpost.errors import Conflict, NotFound
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import Subject, new_record
from sealpost.ledger.repository import TimelineEntry
from sealpost.ledger.timestamps import TimeStamper
from sealpost.logging import get_logger
from sealpost.pki.keys import SigningIdentity
from sealpost.sms.model import FINAL_STATUSES, Sms
from sealpost.sms.repository import SmsCertificateRepository, SmsRepository, StoredSmsCertificate

log = get_logger(__name__)


def _done_at(details: dict[str, Any]) -> str:
    times = [s.get("done_at") for s in details.get("segments", []) if s.get("done_at")]
    return max(times).replace("T", " ").replace("Z", " UTC") if times else "an unknown time"


def summarize(entry: TimelineEntry) -> str:
    """One plain line per SMS event, saying no more than its record."""
    record = entry.record
    details = record.get("details", {})
    reasons = record.get("reasons", [])
    name = entry.event
    if name == "SubmissionAcceptance":
        return (
            f"Accepted for sending: {details.get('segments')} segment(s), "
            f"{details.get('encoding')} encoding"
        )
    if name == "RelayToNonERDS":
        ids = ", ".join(str(s.get("operator_message_id")) for s in details.get("segments", []))
        return (
            f"The operator ({details.get('provider')}) took every segment (operator message "
            f"ids {ids}); this says only that the operator took it"
        )
    if name == "DeliveryReported":
        return f"The operator reported delivery to the handset at {_done_at(details)}"
    if name == "CertificateIssued":
        return (
            f"Evidence certificate version {details.get('version')} issued "
            f"(SHA-256 {details.get('sha256')})"
        )
    if name == "ReplyReceived":
        reply = details.get("reply") or {}
        what = "an opt-out (" + str(reply.get("keyword")) + ")" if reply.get("opt_out") else "an"
        return (
            f"The handset {record.get('sender', {}).get('address')} sent {what} answer "
            f"(text SHA-256 {record.get('content', {}).get('sha256')})"
        )
    if reasons:
        return "; ".join(r.get("text", "") for r in reasons)
    return name


@dataclass(frozen=True)
class IssuedSmsCertificate:
    stored: StoredSmsCertificate
    pdf: bytes


class SmsCertificates:
    def __init__(
        self,
        *,
        repository: SmsRepository,
        certificates: SmsCertificateRepository,
        blobs: BlobStorage,
        tenant_name: Callable[[str], str],
        ledger: LedgerReader,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        ledger_origin: str,
        hostname: str,
    ) -> None:
        self.repository = repository
        self.certificates = certificates
        self.blobs = blobs
        self.tenant_name = tenant_name
        """``tenant_id -> name``."""
        self.ledger = ledger
        self.seal = seal
        self.timestamper = timestamper
        self.trust_roots = list(trust_roots)
        self.ledger_origin = ledger_origin
        self.hostname = hostname

    def issue(self, sms: Sms) -> IssuedSmsCertificate | None:
        """Issue, store and record the next version; None while the SMS is not final or a
        record still waits for its seal (the loop tries again), or another issuer won."""
        fresh = self.repository.get(sms.id)  # the caller's copy may be stale
        if fresh is None or fresh.status not in FINAL_STATUSES:
            return None
        sms = fresh
        timeline = [
            e
            for e in self.repository.timeline(sms.tenant_id, sms.id)
            if e.event != "CertificateIssued" or e.sealed
        ]
        if not all(e.sealed for e in timeline):
            return None
        events = []
        for entry in timeline:
            try:
                bundle = self.ledger.bundle(entry.record_id, sms.tenant_id)
            except NotSealedYet:
                return None
            record = entry.record
            events.append(
                CertificateEvent(
                    record_id=entry.record_id,
                    event=entry.event,
                    event_uri=record["event"]["uri"],
                    event_time=entry.event_time,
                    summary=summarize(entry),
                    details=record.get("details", {}),
                    reasons=tuple((r["code"], r["text"]) for r in record.get("reasons", [])),
                    bundle=bundle,
                )
            )
        previous = self.certificates.versions(sms.id)
        version = (previous[-1].version if previous else 0) + 1
        acceptance = next((e for e in timeline if e.event == "SubmissionAcceptance"), None)
        content = acceptance.record.get("content", {}) if acceptance else {}
        ident = (acceptance.record.get("sender", {}) if acceptance else {}).get(
            "identification"
        ) or {}
        text = sms.text.encode()
        secret = acceptance is not None and carries_access_secret(
            acceptance.record.get("details", {})
        )
        now = datetime.now(UTC)
        data = CertificateData(
            communication_id=sms.id,
            tenant_name=self.tenant_name(sms.tenant_id),
            version=version,
            issued_at=now,
            status=sms.status,
            sender=sms.sender,
            sender_identification=f"{ident.get('method', 'Sealpost')} "
            f"{ident.get('tenant', '')}".strip(),
            recipient=sms.recipient,
            subject=None,
            message_id=f"SMS {sms.id}",
            submitted_at=sms.submitted_at,
            content_sha256=sms.text_sha256,
            content_size=len(text),
            access_secret=secret,
            content_digest=(
                str(acceptance.record["details"]["digest"])
                if secret and acceptance is not None and "digest" in acceptance.record["details"]
                else None
            ),
            parts=tuple(
                (p["content_type"], p.get("filename"), p["sha256"], p["size"])
                for p in content.get("parts", [])
            ),
            events=tuple(events),
            eml=b"" if secret else text,
            supersedes_sha256=previous[-1].sha256 if previous else None,
            ledger_origin=self.ledger_origin,
            verify_hint="sealpost verify certificate.pdf --trust root-ca.pem",
            channel="sms",
        )
        reason = f"Evidence of certified SMS {sms.id}: {sms.status}" + (
            f" (version {version}, supersedes {previous[-1].sha256[:16]}...)" if previous else ""
        )
        pdf = seal_pdf(
            render_certificate(data),
            seal=self.seal,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            reason=reason,
            location=self.hostname,
        )
        digest = self.blobs.put(pdf)
        issued = new_record(
            tenant_id=sms.tenant_id,
            event="CertificateIssued",
            subject=Subject("sms", sms.id),
            details={
                "channel": "sms",
                "version": version,
                "sha256": digest,
                "size": len(pdf),
                "supersedes_sha256": data.supersedes_sha256,
                "status": sms.status,
                "events": [e.record_id for e in events],
            },
        )
        stored = StoredSmsCertificate(
            sms_id=sms.id,
            version=version,
            sha256=digest,
            size=len(pdf),
            created_at=now,
            record_id=issued.id,
            reason=f"{sms.status}: " + (events[-1].event if events else ""),
        )
        if not self.certificates.store(stored, issued, status=sms.status):
            log.info("sms.certificate_raced", sms_id=sms.id, version=version)
            return None
        log.info("sms.certificate_issued", sms_id=sms.id, version=version)
        return IssuedSmsCertificate(stored, pdf)

    def issue_due(self, limit: int = 20) -> int:
        """The certificate loop's step: issue what is due; returns how many were issued."""
        issued = 0
        for sms in self.certificates.candidates(limit):
            try:
                issued += self.issue(sms) is not None
            except Exception as exc:  # the TSA may be down: try again next round
                log.warning("sms.certificate_failed", sms_id=sms.id, error=repr(exc))
        return issued

    def versions(self, sms_id: str) -> list[StoredSmsCertificate]:
        return self.certificates.versions(sms_id)

    def latest(self, sms: Sms, version: int | None = None) -> bytes:
        """The PDF of ``version`` (default the latest), issuing it first if it is due; 409
        while the SMS is not final or its records wait for their seal, 404 for no such
        version."""
        stored = self.certificates.versions(sms.id)
        if version is None and (not stored or self.certificates.is_due(sms.id)):
            if sms.status not in FINAL_STATUSES:
                raise Conflict(f"no certificate yet: SMS {sms.id} is {sms.status}")
            try:
                issued = self.issue(sms)
            except SealError as exc:  # TSA down: the latest sealed version still stands
                log.warning("sms.certificate_on_demand_failed", error=exc.message)
                issued = None
            if issued is not None:
                return issued.pdf
            stored = self.certificates.versions(sms.id)
        if version is not None:
            stored = [c for c in stored if c.version == version]
            if not stored:
                raise NotFound(f"no certificate version {version} for SMS {sms.id}")
        if not stored:
            raise Conflict(
                f"no certificate yet: the evidence of SMS {sms.id} is being sealed; retry"
            )
        try:
            return self.blobs.get(stored[-1].sha256)
        except NotFound:
            raise BlobMissing("sms", sms.id, stored[-1].sha256, "certificate PDF") from None
