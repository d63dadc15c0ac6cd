"""Which thread a message belongs to (RFC 5322 §3.6.4, and the subject as a careful fallback).

A reply names its parent in ``In-Reply-To`` and its ancestors in ``References``; any of them
already known leads to the thread.  Mail clients that drop those headers still keep a reply
prefix in the subject, so a message *with* such a prefix ("Re:", "RV:", "AW:", "Fwd:", "Antw:",
"回复:"...) whose subject, once stripped, matches a thread of the same customer that had mail
within :data:`SUBJECT_WINDOW` joins it.  A subject without a prefix never joins anything by
subject: "Factura mensual" each month, or "Incidencia" from a thousand customers, are new
threads, not one endless one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

SUBJECT_WINDOW = timedelta(days=30)
"""How recent a thread's last message must be for a prefixed subject to join it."""
MAX_REFERENCES = 50
"""References beyond the last 50 are ignored (a loop of forwards can carry hundreds)."""

_MSG_ID = re.compile(r"<([^<>\s]{1,998})>")
_PREFIX = re.compile(
    r"^\s*(?:(?:re|rv|aw|sv|vs|antw|antwort|odp|ynt|res|r|fw|fwd|tr|wg|enc|rif|i|doorst|"
    r"回复|回覆|答复|转发|返信|転送|ответ|отв)"
    r"\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_TAGS = re.compile(r"^\s*(?:\[[^\]]{0,40}\]\s*)+")
"""A leading list tag, "[EXTERNAL]", "[SPAM?]" added by gateways: not part of the subject."""


def message_key(msg_id: str) -> str:
    """The form a Message-ID is kept in: without angle brackets and surrounding space, case
    kept (the local part is case-sensitive), long ones hashed to fit the index."""
    value = msg_id.strip().strip("<>").strip()
    if len(value) > 250:
        return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    return value


def message_ids(header: str | None) -> list[str]:
    """The msg-ids of a header (``In-Reply-To``, ``References``), in order, as keys."""
    if not header:
        return []
    found = _MSG_ID.findall(header)
    if not found and "@" in header and " " not in header.strip():
        found = [header.strip()]
    return [message_key(f) for f in found]


def related_keys(in_reply_to: str | None, references: str | None) -> list[str]:
    """The ancestors a message names: its parent first, then the nearest references."""
    keys = message_ids(in_reply_to)
    refs = message_ids(references)[-MAX_REFERENCES:]
    for key in reversed(refs):
        if key not in keys:
            keys.append(key)
    return keys


def has_reply_prefix(subject: str) -> bool:
    return bool(_PREFIX.match(_TAGS.sub("", subject)))


def subject_key(subject: str) -> str:
    """The subject without tags, reply and forward prefixes, case and spacing."""
    text = subject
    for _ in range(10):  # "[EXT] RE: [Ticket] RV: ..." alternates
        stripped = _PREFIX.sub("", _TAGS.sub("", text))
        if stripped == text:
            break
        text = stripped
    return " ".join(text.casefold().split())[:500]
