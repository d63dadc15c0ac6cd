"""What verifying a certificate PDF found, and what a valid one proves, in plain words."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509

from sealpost.ledger.verify import CheckList, VerificationReport


def _name(cert: x509.Certificate | None) -> str:
    return cert.subject.rfc4514_string() if cert is not None else "an unknown signer"


def _time(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "an unknown time"


@dataclass(kw_only=True)
class CertificateReport(CheckList):
    """Every check made on one certificate PDF, plus what was read from it."""

    pdf_sha256: str
    manifest: dict[str, Any] | None = None
    version: int | None = None
    supersedes_sha256: str | None = None
    communication_id: str | None = None
    seal_certificate: x509.Certificate | None = None
    sealed_at: datetime | None = None
    """Time of the seal's signature timestamp (RFC 3161 genTime)."""
    timestamp_authority: x509.Certificate | None = None
    archived_at: datetime | None = None
    """Time of the PAdES document timestamp, when there is one."""
    root_pinned: bool = False
    """False when no trust root was given and the PDF's own root was used."""
    attachments: dict[str, bytes] = field(default_factory=dict)
    evidence: dict[str, VerificationReport] = field(default_factory=dict)
    """Bundle verification reports, by attachment name."""

    def statement(self) -> str:
        """What a valid certificate proves, in one paragraph a non-specialist can read."""
        if not self.ok or self.manifest is None:
            return "This certificate proves nothing: " + "; ".join(
                f"{c.field}: {c.detail}" for c in self.failures
            )
        message: dict[str, Any] = self.manifest.get("message", {})
        archived = (
            f", and the whole file was timestamped again at {_time(self.archived_at)}"
            if self.archived_at is not None
            else ""
        )
        where = (
            "not attached: it carried a single-use access secret, and the operator keeps it"
            if message.get("withheld") == "access_secret" and message.get("file") is None
            else f"attached as {message.get('file') or 'original.eml'}"
        )
        parts = [
            f"This certificate, version {self.version} for communication "
            f"{self.communication_id}, was sealed by {_name(self.seal_certificate)} at "
            f"{_time(self.sealed_at)} (timestamp by {_name(self.timestamp_authority)}){archived}.",
            f"It proves that on {message.get('submitted_at')} {message.get('sender')} submitted "
            f"a message of SHA-256 {message.get('sha256')} ({message.get('size')} bytes, "
            f"{where}) to {message.get('recipient')}",
        ]
        events = []
        for event in self.manifest.get("events", []):
            what = f"at {event.get('event_time')} {event.get('event')} ({event.get('summary')})"
            if event.get("file") is None:
                what += ", a record not yet sealed in the ledger when this version was issued"
            events.append(what)
        if events:
            parts[-1] += ", and that " + "; ".join(events)
        parts[-1] += "."
        parts.append(
            "Each sealed event is an entry of the Merkle log "
            f"{self.manifest.get('ledger_origin')!r} whose head was sealed and timestamped; its "
            "evidence file verifies on its own."
        )
        if self.supersedes_sha256:
            parts.append(
                f"It supersedes the certificate whose SHA-256 is {self.supersedes_sha256}."
            )
        if not self.root_pinned:
            parts.append(
                "The certificate chains were checked against the root certificate inside the PDF "
                "only; pass --trust ROOT.pem to pin the root you expect."
            )
        return " ".join(parts)
