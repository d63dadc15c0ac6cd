"""Reading the waiting message for the pickup page: its text, its attachments, one part.

The page never renders the sender's HTML: it shows the plain-text part (or the HTML's text,
tags removed) as text, and offers the exact original (.eml) and each attachment for download.
Pure functions over the raw bytes (RFC 5322 / MIME, Python's ``email`` package).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Part:
    index: int
    filename: str
    content_type: str
    size: int


def _message(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _attachments(msg: EmailMessage) -> list[Any]:
    return list(msg.iter_attachments()) if msg.is_multipart() else []


def text_of(raw: bytes) -> str:
    msg = _message(raw)
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is None:
            return ""
        content = str(body.get_content())
    except (LookupError, KeyError, ValueError):
        return ""
    if body.get_content_subtype() == "html":
        content = html.unescape(_TAGS.sub(" ", content))
        content = "\n".join(" ".join(line.split()) for line in content.splitlines()).strip()
    return content


def attachments(raw: bytes) -> list[Part]:
    out = []
    for i, part in enumerate(_attachments(_message(raw))):
        data = part.get_payload(decode=True) or b""
        name = part.get_filename() or f"attachment-{i + 1}"
        out.append(Part(i, name, part.get_content_type(), len(data)))
    return out


def attachment(raw: bytes, index: int) -> tuple[Part, bytes] | None:
    found = _attachments(_message(raw))
    if not 0 <= index < len(found):
        return None
    part = found[index]
    data = part.get_payload(decode=True) or b""
    name = part.get_filename() or f"attachment-{index + 1}"
    return Part(index, name, part.get_content_type(), len(data)), bytes(data)
