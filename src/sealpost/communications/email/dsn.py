"""Delivery status notifications (RFC 3464) turned into values for NonDelivery evidence.

A DSN is a ``multipart/report; report-type=delivery-status`` (RFC 6522) whose
``message/delivery-status`` part holds one block of per-message fields and one block per
recipient (RFC 3464 §2.2, §2.3), usually followed by the returned message or its headers.  The
internationalised forms of RFC 6533 (``global-delivery-status``) are read the same way.

Bounces arrive from every kind of MTA and from attackers, so parsing never raises: anything
that is not a multipart/report delivery-status gives None — including free-text bounces with no
machine-readable part, which the VERP return path (``addresses.parse_verp``) still ties to a
communication — and a damaged report gives what could be read.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from types import MappingProxyType

from sealpost.communications.email.mime import (
    generated_body,
    header_text,
    normalize_msg_id,
    parse_message,
)

__all__ = ["ORIGINAL_HEADERS", "DeliveryReport", "RecipientStatus", "parse_dsn"]

ORIGINAL_HEADERS = ("Message-ID", "X-Sealpost-Communication", "Date", "From", "To", "Subject")
"""Headers of the returned message kept in :attr:`DeliveryReport.original_headers`."""

_REPORT_TYPES = ("delivery-status", "global-delivery-status")
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_MESSAGE = ("message/rfc822", "message/global")
_RETURNED_HEADERS = ("text/rfc822-headers", "message/global-headers")
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_STATUS = re.compile(r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?![\w.])")  # RFC 3463 §2
_RECIPIENT_FIELDS = {"final-recipient", "original-recipient"}
_FIELD = re.compile(r"^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$")


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN (RFC 3464 §2.3)."""

    final_recipient: str
    """The address, its ``rfc822;`` address-type prefix removed."""
    original_recipient: str | None
    action: str
    """``failed``, ``delayed``, ``delivered``, ``relayed`` or ``expanded`` (§2.3.3)."""
    status: str
    """RFC 3463 enhanced status code such as ``5.1.1``."""
    diagnostic_code: str | None
    """The remote server's reply, its ``smtp;`` diagnostic-type prefix removed (§2.3.6)."""
    remote_mta: str | None
    last_attempt_date: str | None
    will_retry_until: str | None = None
    inferred: tuple[str, ...] = ()
    """Names of fields that were missing and inferred (``action`` from the status class,
    ``status`` from the diagnostic or the action), so evidence can say so."""

    @property
    def permanent(self) -> bool:
        """A permanent failure (RFC 3463 class 5 / action ``failed``): NonDelivery now."""
        return self.action == "failed"


@dataclass(frozen=True)
class DeliveryReport:
    """A parsed DSN: who reported, about which message, and what happened to each recipient."""

    reporting_mta: str | None
    original_envelope_id: str | None
    """RFC 3461 ENVID echoed back (§2.2.1); Sealpost sends the communication id."""
    recipients: tuple[RecipientStatus, ...]
    original_message_id: str | None
    """Message-ID of the returned message or headers, in ``<...>`` form."""
    original_headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The :data:`ORIGINAL_HEADERS` present in the returned message or headers, as written."""


def parse_dsn(raw: bytes) -> DeliveryReport | None:
    """The delivery report in ``raw``, or None if it is not an RFC 3464 DSN; never raises."""
    try:
        return _parse(raw)
    except Exception:  # a bounce is untrusted input: no report rather than a crash
        return None


def _parse(raw: bytes) -> DeliveryReport | None:
    msg = parse_message(raw)
    if msg is None or msg.get_content_type() != "multipart/report":
        return None
    report_type = str(msg.get_param("report-type", "") or "").lower()
    if report_type and report_type not in _REPORT_TYPES:
        return None  # e.g. a feedback report (RFC 5965) or a read receipt (RFC 8098)
    children = msg.get_payload()
    if not isinstance(children, list):  # no boundary found: nothing machine-readable
        return DeliveryReport(None, None, (), None) if report_type else None
    blocks: list[list[tuple[str, str]]] = []
    returned: Message | None = None
    found_status = False
    for child in children:
        if not isinstance(child, Message):
            continue
        kind = child.get_content_type()
        if kind in _STATUS_PARTS and not found_status:
            found_status = True
            blocks = _status_blocks(child)
        elif kind in _RETURNED_MESSAGE + _RETURNED_HEADERS and returned is None:
            returned = _returned_headers(child)
    if not report_type and not found_status:
        return None  # no report-type and nothing that says delivery status
    per_message: dict[str, str] = {}
    if blocks and not _RECIPIENT_FIELDS & {k.lower() for k, _ in blocks[0]}:
        per_message = dict(_lowered(blocks.pop(0)))
    recipients = tuple(r for r in (_recipient(b) for b in blocks) if r is not None)
    original: dict[str, str] = {}
    if returned is not None:
        for name in ORIGINAL_HEADERS:
            value = header_text(returned, name)
            if value is not None:
                original[name] = value
    return DeliveryReport(
        reporting_mta=_strip_type(per_message.get("reporting-mta")),
        original_envelope_id=per_message.get("original-envelope-id") or None,
        recipients=recipients,
        original_message_id=normalize_msg_id(original.get("Message-ID")),
        original_headers=MappingProxyType(original),
    )


def _status_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The field blocks of a delivery-status part, whatever shape the parser left it in.

    The standard parser pre-splits ``message/delivery-status`` into header blocks but reads
    ``message/global-delivery-status`` as one message, and neither survives a base64 or
    quoted-printable transfer encoding (seen from some gateways); so the part's text is
    rebuilt, decoded and split here, one way for every case.
    """
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if part.is_multipart():
        data, _exact = generated_body(part, "\n")
        if cte == "base64":
            try:
                data = base64.b64decode(data)
            except (binascii.Error, ValueError):
                return []
        elif cte == "quoted-printable":
            data = quopri.decodestring(data)
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    return _split_blocks(data.decode("utf-8", "replace"))


def _split_blocks(text: str) -> list[list[tuple[str, str]]]:
    """RFC 3464 §2.1: blocks of header-like fields separated by blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
        elif line[0] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}")
        else:
            match = _FIELD.match(line)
            if match:
                current.append((match.group(1), match.group(2).strip()))
    if current:
        blocks.append(current)
    return blocks


def _returned_headers(part: Message) -> Message | None:
    """The header section of the returned message (RFC 3462 §3) as a parsed message."""
    payload = part.get_payload()
    if isinstance(payload, list):
        inner = payload[0] if payload else None
        return inner if isinstance(inner, Message) else None
    decoded = part.get_payload(decode=True)
    if not isinstance(decoded, bytes):
        return None
    return parse_message(decoded)


def _recipient(block: list[tuple[str, str]]) -> RecipientStatus | None:
    """One per-recipient block; missing fields are inferred where RFC 3463 allows."""
    fields = dict(_lowered(block))
    final = _strip_type(fields.get("final-recipient")) or _strip_type(
        fields.get("original-recipient")
    )
    if not final:
        return None
    inferred: list[str] = []
    diagnostic = _strip_type(fields.get("diagnostic-code"))
    status_match = _STATUS.search(fields.get("status", ""))
    action = fields.get("action", "").split(" ")[0].strip().lower()
    if action not in _ACTIONS:
        action = ""
    if status_match:
        status = status_match.group(0)
    else:
        from_diagnostic = _STATUS.search(diagnostic or "")
        if from_diagnostic:
            status = from_diagnostic.group(0)
        elif action:
            status = {"failed": "5.0.0", "delayed": "4.0.0"}.get(action, "2.0.0")
        else:
            return None
        inferred.append("status")
    if not action:
        action = {"5": "failed", "4": "delayed"}.get(status[0], "delivered")
        inferred.append("action")
    return RecipientStatus(
        final_recipient=final,
        original_recipient=_strip_type(fields.get("original-recipient")),
        action=action,
        status=status,
        diagnostic_code=diagnostic,
        remote_mta=_strip_type(fields.get("remote-mta")),
        last_attempt_date=fields.get("last-attempt-date") or None,
        will_retry_until=fields.get("will-retry-until") or None,
        inferred=tuple(inferred),
    )


def _lowered(block: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Field names lower-cased; the first occurrence of a name wins."""
    return list(reversed([(k.lower(), v) for k, v in block]))


def _strip_type(value: str | None) -> str | None:
    """``rfc822; <alice@example.com>`` → ``alice@example.com`` (RFC 3464 §2.3.2 address-type)."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    text = rest if sep and re.fullmatch(r"[A-Za-z0-9-]+", kind.strip()) else value
    text = text.strip()
    if text.startswith("<") and text.endswith(">") and text.count("<") == 1:
        text = text[1:-1].strip()
    return text or None
