"""The tracked copy of a message: a 1×1 image and redirected links in its HTML part.

Pure (no I/O).  Only a leaf ``text/html`` part that is not an attachment, nor inside an
attached or forwarded message (``message/rfc822``), is rewritten; a
plain-text-only message, or one whose HTML cannot be decoded with its charset, comes back
unchanged (``None``): tracking is never guessed into a text part.  Each other part, and every
header field, is written back as received (:func:`~sealpost.communications.email.mime.
flatten_verbatim`); the rewritten part is re-encoded quoted-printable (base64 if it was base64),
its Content-Transfer-Encoding set accordingly.

Links: ``href`` of ``<a>`` and ``<area>`` whose value (character references resolved, tabs and
line breaks dropped as browsers do) is an ``http`` or ``https`` URL with a host.  Others
(``mailto:``, ``tel:``, ``#anchors``, relative links) stay as they are.  The redirect only ever
goes to the URL stored here for its token, so the redirector is not an open redirect.
"""

from __future__ import annotations

import base64
import html
import quopri
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

from sealpost.communications.email.mime import flatten_verbatim, line_ending, parse_message

MAX_LINKS = 200
"""Links rewritten per message; any beyond stay untracked (a newsletter has a few dozen)."""
MAX_URL = 2048
"""A longer link is left untracked (browsers and servers cap URLs around this length)."""

_HREF = re.compile(r"""(?<=[\s"'/])href\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+)""", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_NOT_URL_SAFE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class TrackedLink:
    position: int
    """1-based, in document order among the rewritten links."""
    url: str
    """Where the redirect goes: the link's URL as a browser reads it, non-ASCII escaped."""
    replacement: str


@dataclass(frozen=True)
class Rewritten:
    raw: bytes
    """The tracked copy: the message with its HTML part(s) rewritten."""
    pixel: bool
    links: tuple[TrackedLink, ...]


def link_target(value: str) -> str | None:
    """The URL an ``href`` value leads to, when it is one we track; else None."""
    url = _TAB_NEWLINE.sub("", html.unescape(value)).strip()
    if not url or len(url) > MAX_URL or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    # a Location field carries ASCII only: escape the rest as a browser would
    return _NOT_URL_SAFE.sub(lambda m: quote(m.group(), safe=""), url)


class _Links(HTMLParser):
    """Collects (start, end, href value) of the ``href`` of each ``<a>`` / ``<area>``."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, int, str]] = []
        self._line_starts = [0]
        for match in re.finditer("\n", text):
            self._line_starts.append(match.end())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "area"):
            return
        source = self.get_starttag_text()
        if source is None:
            return
        line, column = self.getpos()
        start = self._line_starts[line - 1] + column
        match = _HREF.search(source)
        if match is None:
            return
        value = match.group(1)
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        self.found.append((start + match.start(1), start + match.end(1), value))

    handle_startendtag = handle_starttag


def rewrite_html(
    text: str, *, pixel_url: str | None, link_url: Callable[[int, str], str] | None
) -> tuple[str, list[TrackedLink], bool]:
    """``text`` with its links through ``link_url(position, url)`` and the pixel before
    ``</body>`` (or at the end); the links rewritten and whether the pixel was added."""
    links: list[TrackedLink] = []
    edits: list[tuple[int, int, str]] = []
    if link_url is not None:
        parser = _Links(text)
        try:
            parser.feed(text)
            parser.close()
        except Exception:  # a parser failure leaves the links untracked, never the message
            parser.found = []
        for start, end, value in parser.found:
            if len(links) >= MAX_LINKS:
                break
            url = link_target(value)
            if url is None:
                continue
            replacement = link_url(len(links) + 1, url)
            links.append(TrackedLink(len(links) + 1, url, replacement))
            edits.append((start, end, f'"{html.escape(replacement)}"'))
    pixel = pixel_url is not None
    if pixel_url is not None:
        image = (
            f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0">'
        )
        ends = list(_BODY_END.finditer(text))
        at = ends[-1].start() if ends else len(text)
        edits.append((at, at, image))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, links, pixel


def _attached(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
    return disposition == "attachment"


def _html_parts(msg: Message) -> list[Message]:
    """The sender's own HTML parts: never one inside an attached or forwarded message
    (``message/*``) or under an attachment, which are documents to deliver as they are."""
    out: list[Message] = []

    def visit(part: Message) -> None:
        if _attached(part):
            return
        if part.is_multipart():
            if part.get_content_maintype() == "message":  # message/rfc822, /global...
                return
            for child in part.get_payload():
                if isinstance(child, Message):
                    visit(child)
            return
        if part.get_content_type() == "text/html":
            out.append(part)

    visit(msg)
    return out


def _decode(part: Message) -> tuple[str, str] | None:
    """The part's text and the charset to write it back in; None if it cannot be read."""
    charset = (part.get_content_charset() or "us-ascii").lower()
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    names = (charset, "utf-8") if charset in ("us-ascii", "ascii") else (charset,)
    for name in names:
        try:
            if "<>".encode(name) != b"<>":  # not ASCII-compatible (UTF-16...): leave it
                return None
            return payload.decode(name), name
        except (LookupError, UnicodeError):
            continue
    return None


def _set_body(part: Message, data: bytes, was_base64: bool) -> None:
    if was_base64:
        body = base64.encodebytes(data).decode("ascii")
        encoding = "base64"
    else:
        body = quopri.encodestring(data).decode("ascii")
        encoding = "quoted-printable"
    if part.get("Content-Transfer-Encoding") is None:
        part["Content-Transfer-Encoding"] = encoding
    else:
        part.replace_header("Content-Transfer-Encoding", encoding)
    part.set_payload(body)


def rewrite_message(
    raw: bytes,
    *,
    pixel_url: str | None,
    link_url: Callable[[int, str], str] | None,
) -> Rewritten | None:
    """The tracked copy of ``raw``; None when it has no HTML part that can be rewritten (a
    plain-text-only message is never rewritten) or nothing would change."""
    msg = parse_message(raw)
    if msg is None:
        return None
    links: list[TrackedLink] = []
    pixel = False
    changed = False
    for part in _html_parts(msg):
        decoded = _decode(part)
        if decoded is None:
            continue
        text, charset = decoded
        offset = len(links)

        def numbered(n: int, url: str, offset: int = offset) -> str:
            assert link_url is not None
            return link_url(offset + n, url)

        new, found, added = rewrite_html(
            text,
            pixel_url=None if pixel else pixel_url,  # one pixel per message
            link_url=numbered if link_url is not None else None,
        )
        if new == text:
            continue
        links += [TrackedLink(offset + k.position, k.url, k.replacement) for k in found]
        pixel = pixel or added
        was_base64 = str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        _set_body(part, new.encode(charset), was_base64)
        changed = True
    if not changed:
        return None
    nl = line_ending(raw).decode("ascii")
    return Rewritten(flatten_verbatim(msg, nl), pixel, tuple(links))
