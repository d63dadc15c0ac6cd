"""MIME facts for evidence: what a message says, and the digest of every part's bytes.

Evidence is about bytes.  The digest of the whole message is always the SHA-256 of the exact
bytes received (never of a re-serialisation), and describing a message never fails: a
malformed message is still a message that was sent, so its defects are recorded next to the
facts instead of raising.  Parts are digested as ETSI EN 319 522-2 UserContentInfo wants, one
per leaf MIME part (RFC 2045/2046), over the transfer-decoded payload, so a certificate can
prove which attachment was sent without revealing the others.

The parser is the standard library's with the ``compat32`` policy: it is the most tolerant one
(it records defects rather than raising) and keeps header values as received; the modern header
parser is only used, under a guard, to decode RFC 2047 encoded words and address lists.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import hashlib
import io
import itertools
import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors as email_errors
from email.feedparser import FeedParser
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import SMTP, SMTPUTF8, Compat32, compat32, default
from typing import Any, TypeVar

from sealpost.communications.email.addresses import AddressError, idna_domain, split_address
from sealpost.errors import InvalidInput
from sealpost.ledger.records import ContentInfo, ContentPart

__all__ = [
    "HeaderError",
    "MessageFacts",
    "build_message",
    "describe_message",
    "ensure_message_id",
    "flatten_verbatim",
    "has_bare_line_ends",
    "header_section",
    "line_ending",
    "new_message_id",
    "prepend_headers",
    "to_crlf",
]

_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
_MAX_FIELD = 64 * 1024
"""Characters of one header field (all its occurrences together) read for the facts.  RFC 5322
§2.1.1 caps a line at 998 characters; a longer field is abuse, and the stdlib's decoders cost
more than linear time on some (see :data:`_MAX_MODERN`), so the rest is left unread (the
whole-message digest still covers it) and a defect says so."""
_MAX_MODERN = 8 * 1024
"""Longest value given to the modern header parser (``email.headerregistry``), which is
quadratic on groups, comments and runs of encoded words (a To of 256 KiB of ``g:`` took 22 s,
1 MiB minutes); longer values go to the classic parser, slower only per character."""
_MAX_PARAMS = 8 * 1024
"""Characters of Content-Type and Content-Disposition read for their parameters (boundary,
charset, file name): the stdlib parses parameters in quadratic time (``_parseparam`` slices
the rest of the value at each ``;``), and its parser reads the boundary of every multipart
itself: 1 MiB of ``; a="x"`` took 10 s, 4 MiB minutes.  An RFC 2231 file name of 255
characters takes under 1 KiB."""
_PARAM_FIELDS = frozenset({"content-type", "content-disposition"})
_MAX_PARTS = 1000
"""Leaf parts described (one ContentPart each in every record of the message).  Far more than
mail has; the message digest covers the rest, and a defect says they were not described."""
_DELIVERY_STATUS = re.compile(rb"delivery-status", re.IGNORECASE)
_MULTIPART = re.compile(rb"multipart/", re.IGNORECASE)
_MAX_MULTIPARTS = 500
"""Mentions of ``multipart/`` above which the body is not parsed: the stdlib parses a nested
multipart in a generator nested in its parent's, in time quadratic in the depth (eleven chains
900 deep, 540 KiB, took 15 s).  Mail nests a handful; a digest of 200 messages, a few hundred."""
_MAX_DELIMITERS = 10 * _MAX_PARTS
"""Lines starting ``--`` (candidate boundary delimiters, RFC 2046 §5.1.1) above which the body
is not MIME-parsed at all: the stdlib builds an object per part, and 5 MiB of empty parts
made 500,000 of them (330 MB, 14 s); 50 MiB would take gigabytes."""
_READ_FIELDS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 §2.2 ftext
_MSG_ID = re.compile(r"<[^<>]*>")
_LINE_END = rb"(?:\r\n|\n|\r(?!\n))"  # CRLF, or a bare LF or CR (as SMTP clients read them)
_LINE_ENDS = re.compile(_LINE_END)
_BLANK_LINE = re.compile(rb"(?:\A|" + _LINE_END + rb")" + _LINE_END)
_T = TypeVar("_T")


class HeaderError(InvalidInput):
    """A header that cannot be written safely (bad name, line break in the value)."""

    code = "invalid_header"
    title = "A header cannot be used"


@dataclass(frozen=True)
class MessageFacts:
    """What a message says about itself, plus the digests of its bytes (never raises to build).

    Header-derived fields are best effort and None (or empty) when absent or unreadable; only
    ``content`` is always exact.
    """

    message_id: str | None
    """RFC 5322 §3.6.4 msg-id as written, whitespace removed, in ``<...>`` form."""
    subject: str | None
    """Decoded (RFC 2047 encoded words, raw UTF-8 of RFC 6532), unfolded."""
    from_address: str | None
    from_display: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: str | None
    """The Date header as written (unfolded); parsing it is the reader's business."""
    in_reply_to: str | None
    references: tuple[str, ...]
    content: ContentInfo
    """SHA-256 and size of the exact raw bytes, and one entry per leaf MIME part."""
    defects: tuple[str, ...]
    """The parser's complaints, in words, for the evidence record."""
    bcc: tuple[str, ...] = ()
    """Addresses of the Bcc fields (RFC 5322 §3.6.3): recipients no delivered copy shows."""


# -- parsing helpers (also used by dsn.py) -------------------------------------------------


class _BoundedMessage(Message):
    """compat32's message, whose parameter fields are read up to :data:`_MAX_PARAMS` only;
    ``raw_items`` (the facts, re-serialisation) still give every field whole."""

    def get(self, name: str, failobj: Any = None) -> Any:
        value = super().get(name, failobj)
        if isinstance(value, str) and len(value) > _MAX_PARAMS and name.lower() in _PARAM_FIELDS:
            return value[:_MAX_PARAMS]
        return value


def parse_message(raw: bytes) -> Message | None:
    """Parse with the tolerant ``compat32`` policy; None only if the parser itself breaks.

    A body with more than :data:`_MAX_DELIMITERS` delimiter-like lines is left unparsed (the
    header only: :func:`_too_many_parts`)."""
    try:
        return _parse(raw, headersonly=_too_many_parts(raw))
    except Exception:  # evidence must survive any input, RecursionError included
        return None


_FEED = 64 * 1024


def _parse(raw: bytes, *, headersonly: bool) -> Message:
    """``BytesParser(...).parsebytes(raw)``, fed in slices: ``parsebytes`` decodes the whole
    message to one ``str`` and reads it through a ``StringIO`` (four bytes a character), five
    copies of the message before parsing starts.  The feed parser takes any slicing alike, and
    ASCII with ``surrogateescape`` decodes each byte on its own, so it is fed the same text.
    (Not ``BytesParser.parse`` of a file: its ``TextIOWrapper`` turns CRLF into LF, which
    would change the digests of text parts.)"""
    parser = FeedParser(_BoundedMessage, policy=compat32)
    if headersonly:
        parser._set_headersonly()  # type: ignore[attr-defined]  # as email.parser.Parser does
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED):
        parser.feed(str(view[start : start + _FEED], "ascii", "surrogateescape"))
    return parser.close()


def _too_many_parts(raw: bytes) -> bool:
    """More lines that could delimit parts than a message describes (:data:`_MAX_DELIMITERS`),
    more multiparts than mail nests (:data:`_MAX_MULTIPARTS`), or as many blank lines in a
    message that may hold a ``message/delivery-status`` part: the stdlib parses each of its
    blocks as a message nested in the previous one's generator, in quadratic time (5 MiB of
    blocks took 40 s)."""
    if raw.count(b"\n--") > _MAX_DELIMITERS:
        return True
    if next(itertools.islice(_MULTIPART.finditer(raw), _MAX_MULTIPARTS, None), None):
        return True
    blank_lines = raw.count(b"\n\n") + raw.count(b"\n\r\n")
    return blank_lines > _MAX_DELIMITERS and _DELIVERY_STATUS.search(raw) is not None


def header_text(msg: Message, name: str) -> str | None:
    """The first ``name`` header, unfolded and stripped, 8-bit bytes read as UTF-8 (RFC 6532).

    No RFC 2047 decoding: this is the field as written, for ids, dates and structured fields.
    """
    values = header_texts(msg, name)
    return values[0] if values else None


def header_texts(msg: Message, name: str) -> list[str]:
    """Every ``name`` header, as :func:`header_text` gives the first, up to :data:`_MAX_FIELD`
    characters in all."""
    wanted = name.lower()
    out: list[str] = []
    budget = _MAX_FIELD
    for key, value in msg.raw_items():
        if budget > 0 and isinstance(key, str) and key.lower() == wanted:
            text = _unfold(_as_text(str(value)[: 2 * budget]))[:budget]
            budget -= max(1, len(text))
            out.append(text)
    return out


def _field_length(msg: Message, name: str) -> int:
    wanted = name.lower()
    return sum(len(str(v)) for k, v in msg.raw_items() if str(k).lower() == wanted)


def _as_text(value: object) -> str:
    """A raw header value (``str`` with surrogate escapes for 8-bit bytes) as real text.

    Every text of :class:`MessageFacts` passes here, because evidence is RFC 8785 JSON, which
    must be valid Unicode: no surrogate may come out.  Escaped bytes alone are read as UTF-8
    (RFC 6532), else as Latin-1.  Escapes among decoded characters (the stdlib decodes an RFC
    2047 word in a charset it does not know, ``=?x-unknown?q?=C3=A9?=``, to escapes) are read
    as UTF-8 where they are, and become U+FFFD where they are not.
    """
    text = str(value)
    try:
        data = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return _valid_unicode(text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # the classic guess for unlabelled 8-bit headers


_STRAY_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # not a surrogateescape byte


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        data = _STRAY_SURROGATE.sub("\ufffd", text).encode("utf-8", "surrogateescape")
        return data.decode("utf-8", "replace")
    return text


def _unfold(text: str) -> str:
    """RFC 5322 §2.2.3 unfolding: remove the CRLF before folding whitespace."""
    return re.sub(r"\r?\n(?=[ \t])", "", text).replace("\r", "").replace("\n", "").strip()


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words, best effort; text without them is returned unchanged."""
    if "=?" not in text:
        return text
    decoders: tuple[Callable[[str], object], ...] = (
        *((lambda t: default.header_factory("subject", t),) if len(text) <= _MAX_MODERN else ()),
        lambda t: make_header(decode_header(t)),  # classic: the fallback (and for long text)
    )
    for decode in decoders:
        with contextlib.suppress(Exception):  # any decoding failure: try the next decoder
            return _as_text(decode(text))
    return text


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """``[(display name, address), ...]`` from every ``name`` header, groups flattened."""
    out: list[tuple[str, str]] = []
    for value in header_texts(msg, name):
        pairs: list[tuple[str, str]] = []
        if "=?" not in value and '"' not in value and "(" not in value:
            # the plain case (most mail): the classic parser, ten times cheaper
            with contextlib.suppress(Exception):
                pairs = [(n, a) for n, a in email.utils.getaddresses([value]) if "@" in a]
        if not pairs:
            try:
                if len(value) > _MAX_MODERN:  # too long for the modern parser: see there
                    raise ValueError(value[:20])
                parsed = default.header_factory(name.lower(), value)
                pairs = [(a.display_name, a.addr_spec) for a in parsed.addresses]
            except Exception:  # fall back to the classic, more forgiving parser
                try:
                    pairs = [(decode_words(n), a) for n, a in email.utils.getaddresses([value])]
                except Exception:
                    pairs = []
        out.extend((_as_text(n), _as_text(a)) for n, a in pairs if a and a != "<>")
    return out


def normalize_msg_id(text: str | None) -> str | None:
    """First ``<...>`` of a Message-ID-like field, whitespace removed (RFC 5322 §3.6.4)."""
    if text is None:
        return None
    ids = msg_ids(text)
    return ids[0] if ids else None


def msg_ids(text: str) -> list[str]:
    """Every msg-id in a References-like field; bare tokens are wrapped in angle brackets."""
    found = [re.sub(r"\s+", "", m) for m in _MSG_ID.findall(text)]
    found = [m for m in found if m != "<>"]
    if found:
        return found
    return [f"<{token.strip('<>')}>" for token in text.split() if token.strip("<>")]


# -- parts ---------------------------------------------------------------------------------


def _walk(msg: Message) -> Iterator[tuple[str, Message, bool]]:
    """Every part in document order as ``(section, part, is_leaf)``.

    Sections are IMAP-style numbers (RFC 3501 §6.4.5: ``1``, ``2.1``...).  ``message/rfc822``
    and other ``message/*`` parts are leaves: an attached email is one attachment, digested
    whole.  The walk is iterative so that deep nesting cannot overflow the stack.
    """
    stack: list[tuple[str, Message]] = [("", msg)]
    while stack:
        section, part = stack.pop()
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list) and part.get_content_maintype() != "message":
            yield section, part, False
            prefix = f"{section}." if section else ""
            stack.extend(
                (f"{prefix}{i}", child)
                for i, child in reversed(list(enumerate(children, start=1)))
                if isinstance(child, Message)
            )
        else:
            yield section or "1", part, True


class _Verbatim(Compat32):
    """compat32, but header fields are written back as parsed instead of re-encoded.

    compat32 re-encodes header values through ``email.header.Header``, which refolds them and
    refuses values that look like an embedded header; for re-serialising received bytes, the
    parsed value (folding included) is the faithful answer.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        return f"{name}: {value}{self.linesep}".encode("utf-8", "surrogateescape")


def generated_body(part: Message, linesep: str) -> tuple[bytes, bool]:
    """The body of a parsed ``message/*`` part, re-serialised, and whether it is exact.

    The standard parser keeps no raw bytes for these parts; writing the parsed fields and
    payloads back verbatim reproduces well-formed input byte for byte.  Where the standard
    generator gives up on damaged input, a simpler deterministic serialisation is used and
    the flag is False.
    """
    buf = io.BytesIO()
    policy = _Verbatim().clone(linesep=linesep)
    exact = True
    try:
        BytesGenerator(buf, mangle_from_=False, maxheaderlen=0, policy=policy).flatten(part)
        data = buf.getvalue()
    except Exception:  # e.g. a multipart without parts inside a delivery-status block
        data, exact = _plain_flatten(part, policy), False
    nl = linesep.encode()
    if not part.keys():  # e.g. a message/rfc822 by default in a multipart/digest
        return data.removeprefix(nl), exact
    _head, found, body = data.partition(nl * 2)
    return (body if found else b""), exact


def flatten_verbatim(msg: Message, linesep: str) -> bytes:
    """``msg`` written back with its header fields as parsed (:class:`_Verbatim`): the parts
    left alone come out as received (the open and click tracking's rewritten copy)."""
    buf = io.BytesIO()
    policy = _Verbatim().clone(linesep=linesep)
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0, policy=policy).flatten(msg)
    return buf.getvalue()


def _plain_flatten(part: Message, policy: _Verbatim) -> bytes:
    """Fields as parsed, a blank line, then the raw payload or the sub-parts one after another."""
    out = [policy.fold_binary(str(k), str(v)) for k, v in part.raw_items()]
    out.append(policy.linesep.encode())
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        out.extend(_plain_flatten(p, policy) for p in payload if isinstance(p, Message))
    else:
        out.append(_raw_payload(part))
    return b"".join(out)


def _raw_payload(part: Message) -> bytes:
    """The payload exactly as received, still transfer-encoded."""
    payload = getattr(part, "_payload", b"")  # get_payload() re-decodes 8-bit text lossily
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _payload_bytes(part: Message, linesep: str) -> tuple[bytes, str | None]:
    """Transfer-decoded payload of a leaf, and a note when the raw bytes had to be used."""
    if part.is_multipart():
        body, exact = generated_body(part, linesep)
        return body, None if exact else "damaged message part; digest is of a re-serialisation"
    before = len(part.defects)
    try:
        decoded = part.get_payload(decode=True)
    except Exception as exc:
        return _raw_payload(part), f"undecodable payload ({exc}); digest is of the raw payload"
    if not isinstance(decoded, bytes):
        return _raw_payload(part), "no payload bytes; digest is of the raw payload"
    if any(isinstance(d, email_errors.InvalidBase64LengthDefect) for d in part.defects[before:]):
        return _raw_payload(part), "undecodable base64; digest is of the raw payload"
    return decoded, None


def _filename(part: Message) -> str | None:
    """The part's file name: RFC 2231 parameters, then RFC 2047 words (common in practice)."""
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    return decode_words(_as_text(name)).strip() or None


def _content_type(part: Message) -> str:
    try:
        return _as_text(part.get_content_type())
    except Exception:
        return "application/octet-stream"


def _defect_text(where: str, defect: object) -> str:
    doc = (type(defect).__doc__ or "").strip().splitlines()
    detail = str(defect)
    words = detail if detail else (doc[0] if doc else "")
    return f"{where}: {type(defect).__name__}" + (f": {_as_text(words)}" if words else "")


# -- describe ------------------------------------------------------------------------------


def describe_message(raw: bytes) -> MessageFacts:
    """The facts of ``raw`` for evidence; never raises on malformed MIME.

    ``content.sha256`` is the digest of ``raw`` itself.  Each leaf part gets the digest of its
    transfer-decoded payload (RFC 2045 §6); when a payload cannot be decoded, the digest is of
    its raw bytes and a defect says so.

    A large message (over :data:`_LARGE`) is described in bounded memory beside ``raw`` when
    it can be (:class:`_Runs`): the same facts, digests and defects as the whole parse, which
    remains the answer for everything else.
    """
    if len(raw) > _LARGE and not _too_many_parts(raw):
        runs = _Runs.cut(raw)
        if runs is not None:
            try:
                return _describe(raw, parse_message(runs.skeleton), runs)
            except _NotStreamable:
                pass  # a run where the whole parse must judge it: parse it whole
    return _describe(raw, parse_message(raw), None)


_LARGE = 1 << 20
"""Messages above this size are described by :class:`_Runs` where they can be: below it, the
whole parse costs a few MiB at most."""
_RUN = re.compile(rb"(?<=\n)(?:[A-Za-z0-9+/=]++\r?\n){64,}+")
"""At least 64 consecutive whole lines of base64 characters (RFC 2045 §6.8), each ending with
CRLF or LF; possessive, so the regex engine keeps no backtracking state over megabytes."""


class _NotStreamable(Exception):
    """A run of base64 lines is not all inside base64 leaves, or does not decode strictly:
    the whole parse describes the message instead."""


class _Runs:
    """A large message with its long runs of base64 lines cut out, and their digests.

    Why: the standard parser holds a message several times over (its lines, the joined
    payload, the decoded bytes); a 25 MiB attachment cost 300 MiB.  The bulk of a large
    message is attachments in base64, lines that cannot be boundaries (``--``), header fields
    (``:``) nor continuations (whitespace).  Each run of such lines is replaced by one line
    holding a random token, the small *skeleton* is parsed as usual (same structure, same
    defects), and each base64 leaf holding tokens is digested by decoding its payload with
    the runs read from ``raw`` in slices.  The digest is of the same decoded bytes as the whole
    parse gives (``get_payload(decode=True)``), because this path is only taken where that
    decoding is exact: every token in a leaf whose Content-Transfer-Encoding is base64, the
    payload of a length divisible by 4 and decoding strictly (padding at its end only).
    Anything else raises :class:`_NotStreamable` and the message is parsed whole.
    """

    def __init__(self, raw: bytes, nonce: str, spans: list[tuple[int, int, int]]) -> None:
        self.raw = raw
        self.spans = spans
        """``(start, end, end without the last line end)`` of each run in ``raw``."""
        self.token = re.compile(f"Z{nonce}R([0-9]+)Z")
        self.used = 0
        pieces: list[bytes] = []
        at = 0
        for i, (start, end, text_end) in enumerate(spans):
            pieces += [raw[at:start], f"Z{nonce}R{i}Z".encode(), raw[text_end:end]]
            at = end
        pieces.append(raw[at:])
        self.skeleton = b"".join(pieces)

    @classmethod
    def cut(cls, raw: bytes) -> _Runs | None:
        spans = []
        for match in _RUN.finditer(raw):
            start, end = match.span()
            text_end = end - (2 if raw[end - 2 : end] == b"\r\n" else 1)
            spans.append((start, end, text_end))
        nonce = secrets.token_hex(16)
        if not spans or nonce.encode() in raw:
            return None
        return cls(raw, nonce, spans)

    def holds(self, part: Message) -> bool:
        payload = getattr(part, "_payload", None)
        return isinstance(payload, str) and self.token.search(payload) is not None

    def digest(self, part: Message) -> tuple[str, int]:
        """SHA-256 and size of the decoded payload of a base64 leaf holding runs."""
        payload = getattr(part, "_payload", None)
        cte = str(part.get("content-transfer-encoding", "")).lower()
        if part.is_multipart() or not isinstance(payload, str) or cte != "base64":
            raise _NotStreamable
        decoder = _Base64Digest()
        at = 0
        view = memoryview(self.raw)
        for match in self.token.finditer(payload):
            decoder.feed(payload[at : match.start()].encode("ascii", "surrogateescape"))
            start, _end, text_end = self.spans[int(match.group(1))]
            for piece in range(start, text_end, _FEED):
                decoder.feed(view[piece : min(piece + _FEED, text_end)])
            self.used += 1
            at = match.end()
        decoder.feed(payload[at:].encode("ascii", "surrogateescape"))
        return decoder.result()


class _Base64Digest:
    """Strict base64 decoding (``binascii.a2b_base64(strict_mode=True)``, as
    ``email._encoded_words.decode_b`` first tries) of a stream, line ends removed as
    ``b"".join(payload.splitlines())`` does, hashed as it goes."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.rest = b""
        self.padded = False

    def feed(self, data: bytes | memoryview) -> None:
        data = self.rest + bytes(data).translate(None, b"\r\n")
        cut = len(data) - len(data) % 4
        chunk, self.rest = data[:cut], data[cut:]
        if not chunk:
            return
        if self.padded:  # data after the padding: not strict base64
            raise _NotStreamable
        self.padded = b"=" in chunk
        try:
            decoded = binascii.a2b_base64(chunk, strict_mode=True)
        except binascii.Error:
            raise _NotStreamable from None
        self.sha256.update(decoded)
        self.size += len(decoded)

    def result(self) -> tuple[str, int]:
        if self.rest:  # a length not divisible by 4: the stdlib pads it, with a defect
            raise _NotStreamable
        return self.sha256.hexdigest(), self.size


def _describe(raw: bytes, msg: Message | None, runs: _Runs | None) -> MessageFacts:
    """:func:`describe_message` of ``raw`` parsed as ``msg`` (of ``runs.skeleton`` when given)."""
    content_digest = hashlib.sha256(raw).hexdigest()
    if msg is None:
        return MessageFacts(
            message_id=None,
            subject=None,
            from_address=None,
            from_display=None,
            to=(),
            cc=(),
            date=None,
            in_reply_to=None,
            references=(),
            content=ContentInfo(content_digest, len(raw)),
            defects=("message: the MIME parser could not read this message",),
        )
    linesep = line_ending(raw).decode()
    parts: list[ContentPart] = []
    defects: list[str] = []
    unparsed = _too_many_parts(raw)  # then parse_message read the header only
    if unparsed:
        defects.append("message: too many parts, multiparts or blank lines; parts not described")
    try:
        for section, part, leaf in () if unparsed else _walk(msg):
            where = "message" if part is msg else f"part {section}"
            note = None
            if leaf and len(parts) == _MAX_PARTS:
                defects.append(f"message: more than {_MAX_PARTS} parts; the rest not described")
                break
            if leaf and runs is not None and runs.holds(part):
                digest, size = runs.digest(part)
                parts.append(ContentPart(_content_type(part), digest, size, _filename(part)))
            elif leaf:  # before the defects, so that decoding defects are collected too
                data, note = _payload_bytes(part, linesep)
                parts.append(
                    ContentPart(
                        content_type=_content_type(part),
                        sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data),
                        filename=_filename(part),
                    )
                )
            defects.extend(_defect_text(where, d) for d in part.defects)
            if note:
                defects.append(f"{where}: {note}")
    except _NotStreamable:
        raise
    except Exception as exc:  # keep what was described so far
        defects.append(f"message: parts could not all be described ({type(exc).__name__})")
    if runs is not None and runs.used != len(runs.spans):
        raise _NotStreamable  # a run outside the base64 leaves described (or past the last)
    defects.extend(
        f"message: {name} is longer than {_MAX_FIELD} characters; only the first were read"
        for name in _READ_FIELDS
        if _field_length(msg, name) > _MAX_FIELD
    )

    def header(name: str) -> str | None:
        return _safe(lambda: header_text(msg, name), None)

    def addresses(name: str) -> list[tuple[str, str]]:
        return _safe(lambda: _addresses(msg, name), [])

    subject = header("Subject")
    from_pairs = addresses("From")
    return MessageFacts(
        message_id=_safe(lambda: normalize_msg_id(header("Message-ID")), None),
        subject=_safe(lambda: decode_words(subject), subject) if subject is not None else None,
        from_address=from_pairs[0][1] if from_pairs else None,
        from_display=(from_pairs[0][0] or None) if from_pairs else None,
        to=tuple(a for _, a in addresses("To")),
        cc=tuple(a for _, a in addresses("Cc")),
        date=header("Date"),
        in_reply_to=_safe(lambda: normalize_msg_id(header("In-Reply-To")), None),
        references=tuple(_safe(lambda: msg_ids(header("References") or ""), [])),
        content=ContentInfo(content_digest, len(raw), tuple(parts)),
        defects=tuple(defects),
        bcc=tuple(a for _, a in addresses("Bcc")),
    )


def _safe(fn: Callable[[], _T], fallback: _T) -> _T:
    """``fn()``, or ``fallback`` if reading a header went wrong in any way."""
    try:
        return fn()
    except Exception:  # one unreadable header must not hide the others
        return fallback


# -- writing -------------------------------------------------------------------------------


def line_ending(raw: bytes) -> bytes:
    """CRLF if the first line of ``raw`` ends with CRLF (or there is no line), else LF."""
    end = raw.find(b"\n")
    if end <= 0:
        return b"\r\n" if end != 0 else b"\n"
    return b"\r\n" if raw[end - 1 : end] == b"\r" else b"\n"


def to_crlf(data: bytes) -> bytes:
    """``data`` as SMTP transmits it: every bare LF or CR made CRLF, ending with CRLF.

    RFC 5321 §2.3.8 allows no other line end on the wire, and SMTP clients (aiosmtplib,
    smtplib) convert them this way in DATA; computing the same bytes here lets evidence state
    the digest of exactly what the recipient's server received.
    """
    if has_bare_line_ends(data):
        data = _LINE_ENDS.sub(b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def has_bare_line_ends(data: bytes) -> bool:
    """True when ``data`` has a line end other than CRLF (a bare LF or CR).

    Counted, not ``data.replace(b"\\r\\n", b"")``, which copied the whole message at every
    acceptance (issue 16, P6): every LF follows a CR and every CR precedes an LF exactly when
    there are as many of each as there are CRLF pairs (which cannot overlap)."""
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


def header_section(raw: bytes) -> bytes:
    """The header section of ``raw``: up to and including the first empty line (RFC 5322
    §2.1), or all of ``raw`` when it has none.  Lines may end with CRLF, LF or CR."""
    blank = _BLANK_LINE.search(raw)
    return raw if blank is None else raw[: blank.end()]


def _fold(name: str, value: str, linesep: str) -> str:
    """``name: value`` folded at existing whitespace to about 78 columns (RFC 5322 §2.2.3).

    Folding only inserts a line break before whitespace already in the value, so unfolding
    gives the value back exactly; a token longer than the limit stays on its own long line.
    """
    tokens = re.split(r"(?<=\S)(?=[ \t])", value)  # each break: whitespace run + text
    lines: list[str] = []
    current = f"{name}:"
    if tokens and tokens[0] and not tokens[0][0].isspace():
        tokens[0] = " " + tokens[0]
    for token in tokens:
        if not token:
            continue
        if len(current) + len(token) > _FOLD_AT and current.strip() not in (f"{name}:", ""):
            lines.append(current)
            current = token
        else:
            current += token
    lines.append(current)
    return linesep.join(lines) + linesep


def prepend_headers(raw: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """``raw`` with ``headers`` added on top, in the given order; ``raw`` follows unchanged.

    This is how trace fields (RFC 5321 §4.4 Received), a missing Message-ID and a
    DKIM-Signature are added without touching the bytes that were digested.  Lines end like
    the message's own (CRLF on the SMTP wire).  Values must be single lines: a CR or LF in a
    value would be header injection.  Non-ASCII values are written as UTF-8 (RFC 6532).
    """
    linesep = line_ending(raw).decode()
    out = []
    for name, value in headers:
        if not _HEADER_NAME.match(name):
            raise HeaderError(f"invalid header name {name!r}")
        if _LINE_BREAKS.search(value):
            raise HeaderError(f"line break or NUL in the value of {name}")
        out.append(_fold(name, value.strip(), linesep))
    return "".join(out).encode("utf-8") + raw


def new_message_id(domain: str) -> str:
    """A fresh ``<random@domain>`` msg-id (RFC 5322 §3.6.4), 122 random bits, no host details."""
    return f"<{uuid.uuid4().hex}@{idna_domain(domain)}>"


def ensure_message_id(raw: bytes, domain: str) -> tuple[bytes, str]:
    """``raw`` with a Message-ID prepended if it had none, and the message's Message-ID.

    RFC 5321 §6.3 lets a submission server add a missing Message-ID; evidence needs one as
    the application-layer identifier.
    """
    existing = describe_message(raw).message_id
    if existing is not None:
        return raw, existing
    message_id = new_message_id(domain)
    return prepend_headers(raw, [("Message-ID", message_id)]), message_id


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str | None,
    html: str | None,
    attachments: Sequence[tuple[str, str, bytes]],
    message_id: str,
    date: datetime | None = None,
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
) -> bytes:
    """The RFC 5322 bytes (CRLF line ends) of a message sent through the REST API.

    Addresses are ``local@domain`` or ``Name <local@domain>``; domains are written in A-label
    form.  ``attachments`` are ``(filename, content_type, data)``.  A non-ASCII local part
    makes a message that needs SMTPUTF8 (RFC 6531, headers in raw UTF-8); otherwise non-ASCII
    text goes in RFC 2047 encoded words and the message is plain 7-bit-clean SMTP.
    """
    if text is None and html is None and not attachments:
        raise InvalidInput("a message needs a text or html body, or an attachment")
    if not to:
        raise InvalidInput("a message needs at least one recipient")
    sender_addr = _address_field(sender, "sender")
    to_addrs = tuple(_address_field(a, "to") for a in to)
    cc_addrs = tuple(_address_field(a, "cc") for a in cc)
    reply = _address_field(reply_to, "reply_to") if reply_to else None
    every = [sender_addr, *to_addrs, *cc_addrs, *([reply] if reply else [])]
    needs_utf8 = any(not a.username.isascii() for a in every)
    _check_field("subject", subject)
    for name, value in (("message_id", message_id), ("in_reply_to", in_reply_to or "")):
        _check_field(name, value, ascii_only=True)
    for i, reference in enumerate(references):
        _check_field(f"references[{i}]", reference, ascii_only=True)
    for name, body in (("text", text), ("html", html)):
        if body is not None and not _is_unicode(body):
            raise InvalidInput(f"{name} is not valid Unicode text (a lone surrogate)")
    for i, (filename, content_type, _data) in enumerate(attachments):
        _check_field(f"attachments[{i}].filename", filename)
        _check_field(f"attachments[{i}].content_type", content_type, ascii_only=True)
    try:
        msg = EmailMessage(policy=SMTPUTF8 if needs_utf8 else SMTP)
        msg["From"] = sender_addr
        msg["To"] = to_addrs
        if cc_addrs:
            msg["Cc"] = cc_addrs
        if reply:
            msg["Reply-To"] = reply
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(date or datetime.now(UTC))
        msg["Message-ID"] = normalize_msg_id(message_id) or message_id
        if in_reply_to:
            msg["In-Reply-To"] = normalize_msg_id(in_reply_to) or in_reply_to
        if references:
            msg["References"] = " ".join(msg_ids(" ".join(references)))
        if text is not None:
            msg.set_content(text)
            if html is not None:
                msg.add_alternative(html, subtype="html")
        elif html is not None:
            msg.set_content(html, subtype="html")
        spliced: list[tuple[bytes, bytes]] = []  # (stand-in line, the attachment's data)
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            if not maintype or not subtype or "/" in subtype:
                raise InvalidInput(f"attachment {filename!r}: content type must be type/subtype")
            stand_in = data
            # the stdlib writes bytes given as message/* or multipart/* with LF line ends,
            # not the CRLF base64 lines _splice writes: those it builds itself
            if len(data) > _SPLICE_MIN and maintype.lower() not in ("message", "multipart"):
                stand_in = secrets.token_bytes(48)  # one base64 line of 64 characters
                spliced.append((base64.b64encode(stand_in), data))
            msg.add_attachment(stand_in, maintype=maintype, subtype=subtype, filename=filename)
        for part in msg.walk():  # the stdlib stamps MIME-Version on every part it creates
            if part is not msg:
                del part["MIME-Version"]
        if "MIME-Version" not in msg:
            msg["MIME-Version"] = "1.0"
        return _splice(msg.as_bytes(), spliced)
    except (ValueError, UnicodeError) as exc:  # what the checks above did not foresee
        raise InvalidInput(f"the message cannot be built from these fields: {exc}") from None


_SPLICE_MIN = 64 * 1024
"""Attachments above this size are encoded by :func:`_splice`, not by the stdlib."""
_SPLICE_BLOCK = 57 * 16 * 1024
"""Bytes encoded at a time: whole lines of 57 bytes (76 base64 characters)."""


def _splice(built: bytes, spliced: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``built`` with each stand-in line replaced by its attachment's base64 lines.

    The stdlib holds an attachment four or five times while it writes a message (the base64
    text, its lines split, a buffer per part and one per level); a 25 MiB attachment cost
    hundreds of MiB.  The message is built with a 48-byte random stand-in per large
    attachment (one line), then its lines are replaced with exactly the lines the stdlib
    writes (``email.contentmanager``: 57 bytes a line at ``max_line_length`` 78, CRLF), into
    one buffer handed over without a copy."""
    if not spliced:
        return built
    out = io.BytesIO()
    at = 0
    for token, data in spliced:
        line = token + b"\r\n"
        found = built.find(line, at)
        if found < 0 or built.count(line) != 1:  # the stand-in is random: never in practice
            raise ValueError("an attachment could not be placed")
        out.write(memoryview(built)[at:found])
        for start in range(0, len(data), _SPLICE_BLOCK):
            block = base64.encodebytes(data[start : start + _SPLICE_BLOCK])
            out.write(block.replace(b"\n", b"\r\n"))
        at = found + len(line)
    out.write(memoryview(built)[at:])
    return out.getvalue()


_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029\x00]")
"""Every character ``str.splitlines`` breaks at (the stdlib refuses them in header values),
and NUL."""


def _is_unicode(value: str) -> bool:
    """No lone surrogate (a JSON ``\\ud800`` escape gives one): the text can be UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_field(field: str, value: str, *, ascii_only: bool = False) -> None:
    """A value fit for a header field, else :class:`HeaderError` naming ``field``."""
    if _LINE_BREAKS.search(value):
        raise HeaderError(f"line break or NUL in {field}")
    if not _is_unicode(value) or (ascii_only and not value.isascii()):
        raise HeaderError(f"{field} must be {'ASCII' if ascii_only else 'valid Unicode'} text")


def _address_field(value: str, field: str) -> Address:
    """``Name <local@domain>`` or ``local@domain`` as an Address, domain in A-label form."""
    _check_field(field, value)
    name, addr = email.utils.parseaddr(value)
    if not addr or addr not in value:  # parseaddr silently "repairs" some inputs
        raise InvalidInput(f"{field}: not an address: {value!r}")
    try:
        local, domain = split_address(addr)
        ascii_domain = idna_domain(domain)
    except AddressError as exc:
        raise InvalidInput(f"{field}: {exc.message}") from None
    try:
        return Address(display_name=name, username=local, domain=ascii_domain)
    except (ValueError, IndexError) as exc:  # the stdlib's own checks of the parts
        raise InvalidInput(f"{field}: not an address: {exc}") from None
