"""What registered pickup needs from outside its domain, declared here as ports.

The notice, its reminders and the email codes are Sealpost's own *certified* emails (each a
communication with its own evidence), sent through :class:`Mailer`; SMS codes and SMS notices
go through :class:`SmsSender` (the sms domain; optional: without it ``sms_otp`` and a notice by
SMS are refused), and an SMS notice's own delivery is read through :class:`SmsStates`.  The content
waiting for the recipient is read by SHA-256 (:class:`Contents`), and the communication's own
status follows the pickup through :class:`CommunicationStates`.  The composition root
(``sealpost.app``) provides the adapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from sealpost.ledger.records import Subject


@dataclass(frozen=True)
class OutgoingMail:
    """One certified email of a pickup (the notice, a reminder, a code)."""

    tenant_id: str
    sender: str
    to: str
    subject: str
    text: str
    identification: Mapping[str, str] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)
    access_secret: bool = True
    """It carries a single-use link or a one-time code: its bytes are sealed as evidence but
    never served to the tenant (who could otherwise act as the recipient).  True unless said
    otherwise: every mail of a pickup carries one, and a forgotten flag must not leak it."""


class Mailer(Protocol):
    def send(self, mail: OutgoingMail) -> str:
        """Accept ``mail`` durably (with its SubmissionAcceptance evidence) and return its
        communication id; raises a ``SealpostError`` when it cannot be accepted."""
        ...


@dataclass(frozen=True)
class OutgoingSms:
    tenant_id: str
    to: str
    """E.164."""
    text: str
    details: Mapping[str, str] = field(default_factory=dict)
    """Kept in the evidence."""
    access_secret: bool = True
    """It carries a one-time code or a single-use link: its text is sealed as evidence but
    never shown to the tenant (``GET /v1/sms/{id}``, the certificate).  True unless said
    otherwise, as for :class:`OutgoingMail`."""


class SmsSender(Protocol):
    def send(self, sms: OutgoingSms) -> str:
        """Accept durably (SubmissionAcceptance evidence) and return the SMS id; raises
        InvalidInput for a number that is not one."""
        ...


class SmsStates(Protocol):
    """The certified SMS a notice went by, as the sms domain knows it."""

    def status(self, sms_id: str) -> str | None:
        """``queued``, ``submitted`` (taken by the operator, no final receipt yet),
        ``delivered`` (the operator reported delivery to the handset), ``undelivered``,
        ``failed``, ``unconfirmed`` (no final receipt in time); None: no such SMS."""
        ...


class Contents(Protocol):
    def get(self, sha256: str, *, of: Subject | None = None) -> bytes:
        """The exact bytes stored under ``sha256``; ``NotFound`` when there are none, or
        ``BlobMissing`` naming ``of`` (the communication whose content it is)."""
        ...


class CommunicationStates(Protocol):
    """The communication a pickup belongs to, and the notices it sent."""

    def finish_in(
        self, conn: Connection, communication_id: str, status: str, now: datetime
    ) -> None:
        """Move the communication to its final pickup ``status`` (``accepted``,
        ``rejected``, ``handed_over``, ``unclaimed``) in the caller's transaction, so its
        certificate is issued."""
        ...

    def touch_in(self, conn: Connection, communication_id: str, now: datetime) -> None:
        """New evidence after the final state (a handover, a download): a new certificate
        version is due."""
        ...

    def status(self, communication_id: str) -> str | None:
        """A notice's delivery status: ``queued``, ``delivered``, ``relayed``, ``failed``."""
        ...
