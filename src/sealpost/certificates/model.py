"""What a certificate says: plain values the caller gathers from the store and the ledger.

The renderer only lays these out and the verifier only reads back what the renderer embedded,
so neither touches a database: a certificate can be rebuilt and checked anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class CertificateEvent:
    """One evidence record of the communication's timeline (ETSI EN 319 522-3 event)."""

    record_id: str
    event: str
    """Event name, e.g. "RelayToNonERDS"."""
    event_uri: str
    event_time: datetime
    """UTC, timezone-aware."""
    summary: str
    """One human line, e.g. "Accepted by mx.example.com [192.0.2.1]: 250 2.0.0 Ok"."""
    details: Mapping[str, Any]
    """Channel details from the record (remote host, IP, SMTP reply, TLS, ...)."""
    reasons: tuple[tuple[str, str], ...]
    """(code, text) pairs; every negative event has at least one (EN 319 522-2 §8.2.3)."""
    bundle: Mapping[str, Any] | None
    """The evidence bundle JSON, or None while the record is not sealed yet: then nothing is
    embedded for it and the text says so."""


@dataclass(frozen=True)
class CertificateData:
    """Everything one version of a communication's evidence certificate states."""

    communication_id: str
    tenant_name: str
    version: int
    """1, 2, ...: a new version is issued when new events arrive."""
    issued_at: datetime
    status: str
    """"delivered", "failed", "pending", ..."""
    sender: str
    sender_identification: str
    """How the sender was identified, e.g. "SMTP AUTH user acme-mailer over TLSv1.3"."""
    recipient: str
    subject: str | None
    message_id: str
    submitted_at: datetime
    content_sha256: str
    """SHA-256 (hex) of :attr:`eml`, as every record's ``content.sha256`` states it."""
    content_size: int
    parts: tuple[tuple[str, str | None, str, int], ...]
    """(content_type, filename, sha256, size) of each MIME part."""
    events: tuple[CertificateEvent, ...]
    eml: bytes
    """The exact original message bytes (empty when :attr:`access_secret`)."""
    supersedes_sha256: str | None
    """SHA-256 of the previous version's PDF, so versions form a chain."""
    ledger_origin: str
    verify_hint: str
    """The command a reader runs, e.g. "sealpost verify certificate.pdf --trust root-ca.pem"."""
    channel: str = "email"
    """"email" or "sms": the wording, the original's file name (``original.eml`` or
    ``original.txt``, the SMS text in UTF-8) and the records' subject type."""
    access_secret: bool = False
    """The message carried a single-use link or code: the original is not embedded (only its
    digest and size are stated; :mod:`sealpost.certificates.secrets`)."""
    content_digest: str | None = None
    """How :attr:`content_sha256` was made when it is not the original's plain SHA-256, as the
    SubmissionAcceptance's ``details.digest`` states it (an access-secret SMS:
    ``sha256(nonce ‖ 0x00 ‖ text)``, a commitment only the operator can open)."""
