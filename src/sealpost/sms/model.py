"""What a certified SMS is: its encoding, its segments, its statuses (no I/O).

Encoding follows 3GPP TS 23.038: a text whose every character is in the GSM 7-bit default
alphabet (§6.2.1, the basic table) or its extension table (§6.2.1.1, each of those costs two
septets: the escape 0x1B and the character) is sent as GSM-7; anything else as UCS-2 (UTF-16
code units; a character outside the BMP costs two).  Note that é, ñ, ü, à are in the basic
table, while á, í, ó, ú are not: one of them turns a whole Spanish message into UCS-2.

Segments follow TS 23.040 §9.2.3.24.1: a single SMS holds 160 septets (70 UCS-2 units); a
concatenated one loses 6 octets to the user data header, leaving 153 septets (67 units) per
segment.  A segment never ends between an escape and its character, nor between the two
halves of a surrogate pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sealpost.errors import Conflict
from sealpost.phones import InvalidPhoneNumber as InvalidPhoneNumber


class NumberOptedOut(Conflict):
    """The number answered STOP to one of the tenant's SMS and the request asked to respect
    opt-outs (``respect_opt_out: true``): 409, nothing stored or sent."""

    code = "sms_opted_out"
    title = "The number opted out"
    problem_fields = ("number",)

    def __init__(self, number: str) -> None:
        super().__init__(
            f"{number} answered STOP to one of your SMS (GET /v1/sms/opt-outs); nothing was sent"
        )
        self.number = number


Encoding = Literal["gsm7", "ucs2"]

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""TS 23.038 §6.2.1: the character at index ``i`` is septet ``i`` (0x1B is the escape)."""

GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
"""TS 23.038 §6.2.1.1: sent as 0x1B followed by the value."""

_BASIC = {ch: i for i, ch in enumerate(GSM7_BASIC) if ch != "\x1b"}

SINGLE_GSM7, PART_GSM7 = 160, 153
SINGLE_UCS2, PART_UCS2 = 70, 67
MAX_SEGMENTS = 255
"""The concatenation header numbers parts in one octet (TS 23.040 §9.2.3.24.1)."""


def _gsm7_cost(ch: str) -> int | None:
    if ch in _BASIC:
        return 1
    if ch in GSM7_EXTENSION:
        return 2
    return None


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character is in the basic or extension table, else UCS-2."""
    return "gsm7" if all(_gsm7_cost(ch) is not None for ch in text) else "ucs2"


def _ucs2_cost(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


@dataclass(frozen=True)
class Split:
    """A text as the operator will bill it."""

    encoding: Encoding
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text."""
    parts: tuple[str, ...]

    @property
    def segments(self) -> int:
        return len(self.parts)


def split(text: str) -> Split:
    """Encoding, size and the segments of ``text`` (one segment when it fits in one SMS)."""
    encoding = encoding_of(text)
    cost = (lambda ch: _gsm7_cost(ch) or 0) if encoding == "gsm7" else _ucs2_cost
    single, per_part = (SINGLE_GSM7, PART_GSM7) if encoding == "gsm7" else (SINGLE_UCS2, PART_UCS2)
    units = sum(cost(ch) for ch in text)
    if units <= single:
        return Split(encoding, units, (text,))
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        c = cost(ch)
        if used + c > per_part:  # never split an escape sequence or a surrogate pair
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += c
    if current:
        parts.append("".join(current))
    return Split(encoding, units, tuple(parts))


def reference_of(sms_id: str) -> int:
    """The message's concatenation reference (1..255, TS 23.040 §9.2.3.24.1), derived from
    its id so that every attempt uses the same one: parts sent on a resumed attempt
    reassemble on the handset with those an earlier attempt sent."""
    return hashlib.sha256(sms_id.encode()).digest()[0] % 255 + 1


def gsm7_septets(text: str) -> bytes:
    """The text as unpacked GSM-7 septets, one per octet (SMPP data_coding 0x00)."""
    out = bytearray()
    for ch in text:
        if ch in _BASIC:
            out.append(_BASIC[ch])
        else:
            out += bytes((0x1B, GSM7_EXTENSION[ch]))
    return bytes(out)


def encode(text: str, encoding: Encoding) -> bytes:
    """The octets of one segment's text as SMPP carries it (data_coding 0x00 or 0x08)."""
    return gsm7_septets(text) if encoding == "gsm7" else text.encode("utf-16-be")


# -- statuses ------------------------------------------------------------------------------

QUEUED = "queued"
"""Accepted (SubmissionAcceptance); waiting for the operator to take it."""
SUBMITTED = "submitted"
"""The operator took every segment (RelayToNonERDS); waiting for delivery receipts."""
DELIVERED = "delivered"
"""The operator reported every segment delivered to the handset (DeliveryReported)."""
UNDELIVERED = "undelivered"
"""A segment's final receipt said undelivered, expired or rejected (NonDelivery)."""
FAILED = "failed"
"""The operator refused the message (RelayToNonERDSFailure): nothing was sent."""
UNCONFIRMED = "unconfirmed"
"""No final receipt for every segment in time (DeliveryUnconfirmed): never "delivered"."""

STATUSES = (QUEUED, SUBMITTED, DELIVERED, UNDELIVERED, FAILED, UNCONFIRMED)
FINAL_STATUSES = (DELIVERED, UNDELIVERED, FAILED, UNCONFIRMED)

EXPIRED_IN_QUEUE = "expired_in_queue"
"""The EventReason of a message the operator never took within its validity."""

SEGMENT_PENDING = "pending"
"""Not taken by the operator yet."""
SEGMENT_ACCEPTED = "accepted"
"""Taken by the operator (its message id known); no final receipt yet."""
BAD_FINALS = ("undelivered", "expired", "rejected", "deleted", "unknown")


def message_state(segment_states: list[str]) -> str | None:
    """The message's state as the worst of its segments: a bad final receipt for any segment
    makes it undelivered; every segment delivered makes it delivered; else undecided (None)."""
    if any(s in BAD_FINALS for s in segment_states):
        return UNDELIVERED
    if segment_states and all(s == "delivered" for s in segment_states):
        return DELIVERED
    return None


# -- stored state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One billed part of a message and what the operator said about it."""

    number: int
    """0-based, in the order the parts are read."""
    state: str
    """``pending``, ``accepted``, or a final receipt state (``delivered``, ``undelivered``...)."""
    provider: str | None = None
    message_id: str | None = None
    """The operator's message id (SMPP ``submit_sm_resp.message_id``)."""
    status: str | None = None
    """The operator's error code of the final receipt (SMPP ``err:``), verbatim."""
    reported_at: datetime | None = None
    """When the operator says the final state happened (``done date``)."""
    report_sha256: str | None = None
    """SHA-256 of the raw receipt that decided this segment."""
    unanswered: int = 0
    """How many times it was sent without an answer (no ``submit_sm_resp``): the operator
    may have taken it then, so it may reach the handset more than once."""


@dataclass(frozen=True)
class Sms:
    """One certified SMS to one number, and where it stands."""

    id: str
    tenant_id: str
    status: str
    sender: str
    recipient: str
    text: str
    text_sha256: str
    encoding: str
    segment_count: int
    details: dict[str, Any]
    provider: str | None
    submitted_at: datetime
    updated_at: datetime
    relayed_at: datetime | None
    confirm_by: datetime | None
    final_at: datetime | None
    next_attempt_at: datetime | None
    attempts: int
    last_error: str | None
    idempotency_key: str | None
    request_sha256: str | None
    text_nonce: str | None = None
    """Hex of the 16 random bytes committed with an access-secret text (operator-only):
    :attr:`text_sha256` is then ``sha256(nonce ‖ 0x00 ‖ text)``, not the text's own digest."""
