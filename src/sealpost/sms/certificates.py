"""The evidence certificate of an SMS: the email certificate's toolkit, the SMS's story.

Issued on demand once the SMS has a final status and every record of it is sealed (each
event's bundle is embedded, so the PDF verifies offline with ``sealpost verify``).  The plain
words never claim more than the evidence: RelayToNonERDS says the operator *took* the SMS;
only ``DeliveryReported`` says "the operator reported delivery to the handset at ...", with
the latest segment receipt's done date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.render import render_certificate
from sealpost.certificates.seal import seal_pdf
from sealpost.certificates.secrets import carries_access_secret
from sealpost.errors import Conflict
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.repository import TimelineEntry
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity
from sealpost.sms.model import FINAL_STATUSES, Sms
from sealpost.sms.repository import SmsRepository


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
    if reasons:
        return "; ".join(r.get("text", "") for r in reasons)
    return name


class SmsCertificates:
    def __init__(
        self,
        *,
        repository: SmsRepository,
        tenant_name: Callable[[str], str],
        ledger: LedgerReader,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        ledger_origin: str,
        hostname: str,
    ) -> None:
        self.repository = repository
        self.tenant_name = tenant_name
        """``tenant_id -> name``."""
        self.ledger = ledger
        self.seal = seal
        self.timestamper = timestamper
        self.trust_roots = list(trust_roots)
        self.ledger_origin = ledger_origin
        self.hostname = hostname

    def issue(self, sms: Sms) -> bytes:
        """The sealed PDF; 409 while the SMS is not final or a record waits for its seal."""
        if sms.status not in FINAL_STATUSES:
            raise Conflict(f"no certificate yet: SMS {sms.id} is {sms.status}")
        timeline = self.repository.timeline(sms.tenant_id, sms.id)
        events = []
        for entry in timeline:
            try:
                bundle = self.ledger.bundle(entry.record_id, sms.tenant_id)
            except NotSealedYet:
                raise Conflict(
                    f"no certificate yet: the evidence of SMS {sms.id} is being sealed; retry"
                ) from None
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
        acceptance = next((e for e in timeline if e.event == "SubmissionAcceptance"), None)
        content = acceptance.record.get("content", {}) if acceptance else {}
        ident = (acceptance.record.get("sender", {}) if acceptance else {}).get(
            "identification"
        ) or {}
        text = sms.text.encode()
        secret = acceptance is not None and carries_access_secret(
            acceptance.record.get("details", {})
        )
        data = CertificateData(
            communication_id=sms.id,
            tenant_name=self.tenant_name(sms.tenant_id),
            version=1,
            issued_at=datetime.now(UTC),
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
            supersedes_sha256=None,
            ledger_origin=self.ledger_origin,
            verify_hint="sealpost verify certificate.pdf --trust root-ca.pem",
            channel="sms",
        )
        return seal_pdf(
            render_certificate(data),
            seal=self.seal,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            reason=f"Evidence of certified SMS {sms.id}: {sms.status}",
            location=self.hostname,
        )
