"""What communications need from outside their domain: the registered-pickup desk.

A certified email sent with ``delivery: pickup`` is not relayed; its content waits in
Sealpost and the pickup domain takes over (notice, identification, consent, handover).  The
submission hands each such communication to a :class:`PickupDesk` *inside its own
transaction*, so a communication never exists without its pickup.  The composition root
(``sealpost.app``) adapts the pickup domain's service to this port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from sqlalchemy import Connection

DIRECT, PICKUP = "direct", "pickup"
DELIVERY_MODES = (DIRECT, PICKUP)


@dataclass(frozen=True)
class PickupRequest:
    """The sender's choices for a pickup; None: the tenant's default."""

    identification: str | None = None
    consent: str | None = None
    policy: str | None = None
    phone: str | None = None
    challenge_question: str | None = None
    challenge_answer: str | None = None
    notice: tuple[str, ...] | None = None
    """The notice's channels (``email``, ``sms``); None: email."""


@dataclass(frozen=True)
class NewPickup:
    tenant_id: str
    communication_id: str
    recipient: str
    sender: str
    sender_name: str | None
    subject: str | None
    content_sha256: str
    options: Mapping[str, Any]
    """As :meth:`PickupDesk.resolve` returned them."""
    now: datetime


class PickupDesk(Protocol):
    def default_delivery(self, tenant_id: str) -> str:
        """``direct`` or ``pickup``: the tenant's default for a message that does not say."""
        ...

    def resolve(self, tenant_id: str, request: PickupRequest) -> Mapping[str, Any]:
        """The options to use (defaults filled in, the challenge answer hashed); raises
        ``InvalidInput`` naming the field for a choice that cannot be served."""
        ...

    def open_in(self, conn: Connection, pickup: NewPickup) -> None:
        """Create the pickup in the submission's transaction."""
        ...

    def describe(self, tenant_id: str, communication_id: str) -> dict[str, Any] | None:
        """The pickup's state and steps, for ``GET /v1/communications/{id}``."""
        ...


@dataclass(frozen=True)
class JournalEnvelope:
    """The SMTP envelope a journaled message came with (RFC 5321 §3.3): a journaling server
    puts Bcc recipients only here, so the archive keeps it beside the bytes."""

    transaction_id: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    mail_options: tuple[str, ...]
    client_ip: str
    helo: str | None
    received_at: datetime
    tls: Mapping[str, Any] | None = None


class JournalSink(Protocol):
    """Where the inbound port hands a message sent to a tenant's journal address
    (``journal+<token>@<bounce domain>``); the composition root adapts the archive to it.

    ``archive`` returns only once the message is durably archived (the SMTP ``250`` follows
    it); it raises on any failure, so the sender keeps the message and retries."""

    def tenant_for_token(self, token: str) -> str | None: ...

    def archive(self, tenant_id: str, data: BinaryIO, envelope: JournalEnvelope) -> str:
        """Archive the message byte-exact; returns the archived message's id."""
        ...
