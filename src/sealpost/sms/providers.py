"""What an SMS operator adapter is: the one interface the SMPP client and the HTTP gateway
both implement, so the domain never knows which operator carries a message.

Evidence semantics (ETSI EN 319 522-3 Table 2, group F: the operator is not a registered
delivery service): a submit response only says the operator took a segment (its message id is
kept per segment); only a final delivery receipt per segment says what happened on the handset
side.  Adapters therefore report two things: :class:`Submitted` (synchronously, per message)
and :class:`DeliveryReport` (later, per segment, possibly duplicated or out of order) into a
:class:`ReportSink`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Encoding = Literal["gsm7", "ucs2"]

FinalState = Literal["delivered", "undelivered", "expired", "rejected", "deleted", "unknown"]
"""SMPP 3.4 §5.2.28 message_state finals (DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED,
UNKNOWN) and their HTTP-gateway equivalents; "delivered" is the only good one."""

ReportState = Literal["accepted", "enroute"] | FinalState
"""Intermediate states a report may carry (not final: they decide nothing)."""


@dataclass(frozen=True)
class OutboundSms:
    """One message as the adapter sends it: already validated (E.164) and encoded."""

    sms_id: str
    """Sealpost's id for the message: adapters pass it where the operator echoes it back."""
    sender: str
    """The originator (an alphanumeric sender id or an E.164 number)."""
    to: str
    """E.164, e.g. ``+34600123456``."""
    text: str
    encoding: Encoding
    segments: Sequence[str]
    """The text already split into the segments the operator will bill (concatenated SMS,
    3GPP TS 23.040 §9.2.3.24.1): one operator message id comes back per segment."""
    reference: int = 0
    """The concatenation reference (1..255) every part carries in its UDH, the same on every
    attempt so that parts sent on a later attempt still reassemble with the earlier ones; 0:
    the adapter picks one."""
    taken: Mapping[int, str] = field(default_factory=dict)
    """Segments (0-based) the operator already took on an earlier attempt, with their operator
    ids: the adapter must not send them again, and returns their ids in :class:`Submitted`."""
    valid_until: datetime | None = None
    """Past this the message is worthless (SMPP ``validity_period``, §7.1.1): the operator
    should drop it rather than deliver it late."""


@dataclass(frozen=True)
class Submitted:
    """The operator took every segment: ``message_ids[i]`` is segment ``i``'s operator id."""

    message_ids: Sequence[str]
    provider: str
    """Which adapter carried it ("smpp", "http"): kept in the evidence."""
    details: dict[str, str] = field(default_factory=dict)
    """Operator facts worth keeping (SMSC system id, HTTP status...)."""
    unanswered: Sequence[int] = ()
    """Segments (0-based) sent without an answer before they were taken (see
    :class:`TemporaryFailure`): the operator may have them twice."""


class TemporaryFailure(Exception):
    """The operator could not take (the rest of) it now (unreachable, throttled, unbound):
    retry later.  ``taken`` names the segments the operator did take in this attempt (0-based
    number -> operator id): the caller records them at once and passes them back as
    :attr:`OutboundSms.taken`, so that only the others are sent again.  ``unanswered`` names
    segments sent whose answer never came (the link dropped, a timeout): the operator may
    have taken them, and SMPP 3.4 has no idempotency key to ask, so sending them again is the
    one known at-least-once window; the caller keeps that fact for the evidence."""

    def __init__(
        self,
        reason: str,
        *,
        status: str = "",
        retry_after: float | None = None,
        taken: Mapping[int, str] | None = None,
        unanswered: Sequence[int] = (),
    ):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        """The operator's own code (e.g. ``ESME_RTHROTTLED`` / ``0x58``, an HTTP status)."""
        self.retry_after = retry_after
        self.taken: dict[int, str] = dict(taken or {})
        self.unanswered = list(unanswered)


class PermanentFailure(Exception):
    """The operator refused it for good (invalid destination, barred...): NonDelivery with
    the operator's status as the EventReason.  ``taken``: segments it had taken before it
    refused a later one (their receipts may still arrive), recorded with the failure."""

    def __init__(self, reason: str, *, status: str = "", taken: Mapping[int, str] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.taken: dict[int, str] = dict(taken or {})


@dataclass(frozen=True)
class DeliveryReport:
    """A delivery receipt for one segment, as the operator sent it."""

    provider: str
    message_id: str
    """The operator's message id of the segment (as in :class:`Submitted`)."""
    state: ReportState
    at: datetime
    """When the operator says it happened (``done date``), else when it arrived."""
    status: str = ""
    """The operator's error/status code, verbatim."""
    raw: bytes = b""
    """The report exactly as received (the PDU body, the HTTP request body): stored, and its
    SHA-256 goes in the evidence."""

    @property
    def final(self) -> bool:
        return self.state not in ("accepted", "enroute")


class ReportSink(Protocol):
    """Where adapters hand delivery reports: idempotent (a duplicate changes nothing) and
    durable before it returns (the adapter acknowledges the operator only afterwards)."""

    def report(self, report: DeliveryReport) -> None: ...


@dataclass(frozen=True)
class InboundSms:
    """A mobile-originated message (an answer from a handset), as the operator sent it."""

    provider: str
    phone: str
    """The handset's number (SMPP ``source_addr``), E.164 with ``+`` when the TON says
    international."""
    destination: str
    """The number or sender id it was sent to (SMPP ``destination_addr``)."""
    text: str
    at: datetime
    """When it arrived at Sealpost."""
    raw: bytes = b""
    """The PDU body (or HTTP request body) exactly as received: stored, its SHA-256 in the
    evidence."""


class InboundSink(Protocol):
    """Where adapters hand mobile-originated messages: durable before it returns (the adapter
    acknowledges the operator only afterwards; an exception makes the operator resend)."""

    def inbound(self, message: InboundSms) -> None: ...


class SmsProvider(Protocol):
    """An operator adapter.  ``submit`` is synchronous from the caller's side: it returns once
    the operator took every segment not in ``sms.taken`` (``Submitted.message_ids`` then lists
    every segment's id, the earlier ones included), or raises; a failure after some segments
    were taken says which in its ``taken``, never "nothing was taken" when something was."""

    name: str

    def submit(self, sms: OutboundSms) -> Submitted: ...

    def close(self) -> None: ...
