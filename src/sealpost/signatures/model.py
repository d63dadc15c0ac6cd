"""What callers hand to the signature service (requests, the visitor, the signing intent), the
limits it enforces, and the errors the signing page shows.  No I/O."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

import phonenumbers

from sealpost.config import Settings
from sealpost.errors import InvalidInput, SealpostError

IDENTIFICATIONS = ("email_otp", "sms_otp", "none")


def e164(number: str) -> str | None:
    """``number`` in E.164 form (ITU-T E.164: ``+``, country code, national number), or None
    when it is not a valid number of its country's numbering plan (``phonenumbers``).  An SMS
    code goes only to a number written with its country code: no default region is guessed."""
    if not number.strip().startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


DEFAULT_CONSENT = (
    "I have read the document(s) above. I agree to sign them electronically, and that my "
    "electronic signature binds me as my handwritten signature would."
)
MAX_SIGNERS = 50
MAX_DOCUMENTS = 20
MAX_IMAGE_BYTES = 512 * 1024
SIGNATURE_BOX = (180.0, 54.0)


@dataclass(frozen=True)
class SigningConfig:
    """The slice of the settings signature processes read (``SEALPOST_*``, see config.py)."""

    public_url: str
    """How people reach this Sealpost: the base of signing links."""
    mail_from: str
    """From address of invitations, reminders, codes and copies."""
    hostname: str
    """Location of the audit trail's seal."""
    ledger_origin: str
    """The log the audit trail's evidence bundles name."""
    link_hours: float
    """A link is single-use and valid this long, at most until the process expires."""
    session_minutes: float
    """How long an opened signing page stays usable."""
    default_expiry_days: float
    """A process without ``expires_at`` expires this long after creation."""
    max_document_bytes: int
    """Largest PDF a process accepts."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningConfig:
        return cls(
            public_url=settings.resolved_public_url,
            mail_from=settings.resolved_signing_mail_from,
            hostname=settings.hostname,
            ledger_origin=settings.ledger_origin,
            link_hours=settings.signing_link_hours,
            session_minutes=settings.signing_session_minutes,
            default_expiry_days=settings.signing_default_expiry_days,
            max_document_bytes=settings.signing_max_document_bytes,
        )


class LinkUnusable(SealpostError):
    """A link already used, expired, or of a process that is over; ``renewable`` says whether
    the signer may ask for a fresh one by email."""

    status = 410

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        renewable: bool,
        process_id: str | None = None,
        signer_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        """link_invalid, link_used, link_expired, answered, closed: for the embedder."""
        self.renewable = renewable
        self.process_id = process_id
        self.signer_id = signer_id

    code = "link_unusable"
    title = "This link cannot be used"
    problem_fields = ("kind", "renewable")
    """What the page and its embedder act on (never the process's or signer's ids)."""


@dataclass(frozen=True)
class FieldRequest:
    document: int
    page: int | None = None
    box: tuple[float, float, float, float] | None = None
    anchor: str | None = None


@dataclass(frozen=True)
class SignerRequest:
    name: str
    email: str | None
    phone: str | None
    role: str
    order: int
    identification: str
    fields: tuple[FieldRequest, ...] = ()


@dataclass(frozen=True)
class DocumentRequest:
    name: str
    content: bytes


@dataclass(frozen=True)
class ProcessRequest:
    title: str
    documents: tuple[DocumentRequest, ...]
    signers: tuple[SignerRequest, ...]
    message: str = ""
    signing_order: str = "sequential"
    expires_at: datetime | None = None
    reminder_hours: tuple[float, ...] = ()
    consent_text: str | None = None
    idempotency_key: str | None = None
    request_sha256: str | None = None


@dataclass(frozen=True)
class Visitor:
    """Who is on the signing page: for the evidence."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class SignInput:
    consent: bool
    image_png: bytes | None
    typed: str | None


class WrongCode(InvalidInput):
    code = "wrong_code"
    title = "Wrong code"
    problem_fields = ("attempts_left",)

    def __init__(self, message: str, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


def decode_png(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image_png is not base64") from None
