"""What signature processes need from outside their domain, declared here as ports.

Invitations, reminders, codes and the signed copies are Sealpost's own *certified* emails:
each one is a communication with its evidence (SubmissionAcceptance, delivery...) like any
email a tenant sends, so that "we invited the signer" and "the code went to this address"
are provable (eIDAS art. 44, ETSI EN 319 522: the same evidence as any certified email).
The signatures domain does not know how mail is sent: it hands an :class:`OutgoingMail` to a
:class:`Mailer` and keeps the communication id it gets back.  The composition root
(``sealpost.app``) provides the adapter over communications' submission service.

Codes by SMS (``sms_otp``) are certified SMS of the sms domain, with their own evidence
(SubmissionAcceptance, the operator's acceptance, the delivery receipt): the domain hands an
:class:`OutgoingSms` to an :class:`SmsSender`.  The port is optional: a Sealpost without an SMS
operator (``SMS_PROVIDER=none``) refuses ``sms_otp`` signers.

Documents and their signed revisions are content addressed by SHA-256 (:class:`Contents`),
stored where every other content is, so certificates and bundles name the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Connection


@dataclass(frozen=True)
class OutgoingMail:
    """One certified email of a signature process, as the domain words it."""

    tenant_id: str
    """The tenant the process belongs to: the email is theirs, with their evidence."""
    sender: str
    """The From and envelope sender (``signing_mail_from``)."""
    to: str
    subject: str
    text: str
    """The plain-text body (links and codes are read by people, not rendered)."""
    attachments: Sequence[tuple[str, str, bytes]] = ()
    """(filename, content type, bytes): the signed documents of the copies."""
    identification: Mapping[str, str] = field(default_factory=dict)
    """How the sender is identified in the SubmissionAcceptance evidence."""
    details: Mapping[str, str] = field(default_factory=dict)
    """Channel details kept in the evidence: process, signer and purpose of the email."""
    access_secret: bool = False
    """It carries the signing link or a one-time code: its bytes are sealed as evidence but
    never served to the tenant, who could otherwise sign in the signer's place."""


class Mailer(Protocol):
    """Sends a certified email; the port the signatures domain mails through."""

    def send(self, mail: OutgoingMail) -> str:
        """Accept ``mail`` for delivery (durably, with its SubmissionAcceptance evidence) and
        return its communication id; raises a ``SealpostError`` when it cannot be accepted."""
        ...


@dataclass(frozen=True)
class OutgoingSms:
    """One certified SMS of a signature process (a code)."""

    tenant_id: str
    to: str
    """E.164."""
    text: str
    details: Mapping[str, str] = field(default_factory=dict)
    """Kept in the evidence: process, signer and purpose."""
    access_secret: bool = True
    """It carries a one-time code: its text is sealed as evidence but never shown to the
    tenant, who could otherwise sign as the signer.  True unless said otherwise."""


class SmsSender(Protocol):
    """Sends a certified SMS; the port the signatures domain sends codes by SMS through."""

    def send(self, sms: OutgoingSms) -> str:
        """Accept durably (SubmissionAcceptance evidence) and return the SMS id; raises
        InvalidInput for a number that is not one."""
        ...


class Contents(Protocol):
    """Content by SHA-256: small ones inside the database, large ones as blob files."""

    def get(self, sha256: str) -> bytes:
        """The exact bytes stored under ``sha256``; ``NotFound`` when there are none."""
        ...

    def put_large(self, items: Sequence[bytes]) -> None:
        """Store the items too large for the database as files, durable on return (call it
        before :meth:`put_in`, outside the transaction)."""
        ...

    def put_in(self, conn: Connection, items: Sequence[bytes]) -> list[str]:
        """Store the small items inside the caller's transaction; returns every digest."""
        ...
