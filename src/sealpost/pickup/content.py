"""Reading the waiting message for the pickup page: its text, its HTML made safe, its
attachments, one part.

The sender's HTML is never shown as it came: :func:`html_of` keeps only structure and words
(an allow-list through ammonia, ``nh3``): no script, no event handler, no style, no form, no
frame, no image nor anything else that would load from elsewhere (a remote image is a read
receipt to the sender), links only to http(s) and mailto.  The page shows the result in a
sandboxed iframe without scripts under a ``default-src 'none'`` policy (``pickup.js``), so
that a flaw in the sanitizer alone still runs and loads nothing.  The plain text, the exact
original (.eml) and each attachment stay available.  Pure functions over the raw bytes
(RFC 5322 / MIME, Python's ``email`` package).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import nh3

_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


_SAFE_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup",
        "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
        "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong",
        "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
"""Structure and emphasis only: no img, video, audio, picture, link, style, form, iframe."""
_SAFE_ATTRIBUTES = {
    "a": {"href", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "abbr": {"title"},
}
MAX_HTML_CHARS = 2_000_000
"""A larger HTML part is offered as text and in the .eml only."""


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


def html_of(raw: bytes) -> str | None:
    """The message's HTML part made safe to show (None: no HTML part, or too large)."""
    msg = _message(raw)
    try:
        body = msg.get_body(preferencelist=("html",))
        if body is None:
            return None
        content = str(body.get_content())
    except (LookupError, KeyError, ValueError):
        return None
    if len(content) > MAX_HTML_CHARS:
        return None
    return nh3.clean(
        content,
        tags=set(_SAFE_TAGS),
        attributes={tag: set(names) for tag, names in _SAFE_ATTRIBUTES.items()},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


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
