"""A bounded-memory walk of a raw message's MIME structure (RFC 2045, RFC 2046).

The archive keeps messages of any size byte-exact; the stdlib parser holds several times a
message in memory, so the archive reads structure with this walker instead: one line at a
time, it finds each leaf part's headers (type, charset, file name, transfer encoding), the
byte range of its body in the raw message, and the size and SHA-256 of its *decoded* bytes
(ETSI EN 319 522-2 UserContentInfo: a part can be proven without revealing the others).

Malformed input is archived anyway: the walker never raises on content, it notes defects
(an unclosed multipart, a header block without its blank line, an undecodable base64 body)
and goes on.  Per RFC 2046 §5.1.1 the line break before a boundary delimiter belongs to the
delimiter, not to the body before it.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import BinaryIO

MAX_LINE = 64 * 1024
"""Lines are read in slices of at most this many bytes (a 'line' of 30 MB stays bounded)."""
MAX_HEADER_BLOCK = 256 * 1024
"""A header block larger than this is cut: its remaining lines count as body (a defect)."""
MAX_DEPTH = 32
"""Multiparts nested deeper than this are read as opaque leaves (a defect)."""
MAX_PARTS = 2_000
"""Parts beyond this many are not listed (a defect); the bytes are archived all the same."""


@dataclass(frozen=True)
class Part:
    """One leaf part of a message."""

    content_type: str
    charset: str | None
    filename: str | None
    disposition: str | None
    transfer_encoding: str
    body_start: int
    """Offset of the body's first byte in the raw message."""
    body_end: int
    """Offset just past the body's last byte (the break before a boundary excluded)."""
    size: int
    """Decoded size (after base64 or quoted-printable)."""
    sha256: str
    """SHA-256 of the decoded bytes."""

    @property
    def is_attachment(self) -> bool:
        return self.filename is not None or self.disposition == "attachment"


@dataclass(frozen=True)
class Scan:
    """What a message is made of, read without holding it."""

    headers: Message
    parts: tuple[Part, ...]
    size: int
    sha256: str
    defects: tuple[str, ...] = ()

    def header(self, name: str) -> str | None:
        """A top-level header as text (RFC 2047 decoded); the raw value when it cannot be
        decoded; None when absent."""
        try:
            value = self.headers.get(name)
        except Exception:
            raw = [v for k, v in self.headers.raw_items() if k.lower() == name.lower()]
            value = raw[0] if raw else None
        if value is None:
            return None
        return " ".join(_text(str(value)).split())

    def addresses(self, name: str) -> list[str]:
        """The addresses of a top-level address header (To, Cc, From), lowercased, in order."""
        try:
            values = self.headers.get_all(name) or []
        except Exception:
            return []
        found: list[str] = []
        for value in values:
            try:
                groups = getattr(value, "addresses", None)
            except Exception:  # a broken header: the plain parse below
                groups = None
            if groups is not None:
                found += [_text(a.addr_spec).lower() for a in groups if a.addr_spec]
                continue
            found += [_text(addr).lower() for _, addr in getaddresses([str(value)]) if "@" in addr]
        return found


@dataclass
class _Entity:
    """The part whose body is being read."""

    start: int
    headers: Message
    boundary: bytes | None = None
    leaf: _Leaf | None = None


@dataclass
class _Leaf:
    content_type: str
    charset: str | None
    filename: str | None
    disposition: str | None
    encoding: str
    start: int
    end: int = 0
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    pending_b64: bytes = b""
    held_break: bytes = b""
    """The last line's break, held until the next line shows it is not a boundary's."""
    broken: bool = False

    def feed(self, line: bytes) -> None:
        body, brk = _split_break(line)
        self._decode(self.held_break + body)
        self.held_break = brk

    def _decode(self, data: bytes) -> None:
        if not data:
            return
        if self.encoding == "base64":
            chunk = self.pending_b64 + bytes(b for b in data if b not in b" \t\r\n")
            usable = len(chunk) - len(chunk) % 4
            self.pending_b64 = chunk[usable:]
            self._emit_b64(chunk[:usable])
        elif self.encoding == "quoted-printable":
            self._emit(binascii.a2b_qp(data))
        else:
            self._emit(data)

    def _emit_b64(self, chunk: bytes) -> None:
        if not chunk:
            return
        try:
            self._emit(binascii.a2b_base64(chunk))
        except binascii.Error:
            self.broken = True

    def _emit(self, data: bytes) -> None:
        self.size += len(data)
        self.digest.update(data)

    def finish(self, end: int) -> Part:
        if self.pending_b64:
            padded = self.pending_b64 + b"=" * (-len(self.pending_b64) % 4)
            self._emit_b64(padded)
        self.end = max(end, self.start)
        return Part(
            content_type=self.content_type,
            charset=self.charset,
            filename=self.filename,
            disposition=self.disposition,
            transfer_encoding=self.encoding,
            body_start=self.start,
            body_end=self.end,
            size=self.size,
            sha256=self.digest.hexdigest(),
        )


def _split_break(line: bytes) -> tuple[bytes, bytes]:
    if line.endswith(b"\r\n"):
        return line[:-2], b"\r\n"
    if line.endswith(b"\n"):
        return line[:-1], b"\n"
    return line, b""


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        yield line


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(value: str) -> str:
    """Text fit for a database column: the bytes the parser could not decode (held as lone
    surrogates) become U+FFFD; the archived bytes keep them."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _parse_headers(block: bytes) -> Message:
    """RFC 6532: header fields in UTF-8 are read as such (an internationalised address is
    text, not undecodable bytes); anything else as bytes."""
    try:
        if not block.isascii() and _utf8(block):
            return HeaderParser(policy=default_policy).parsestr(block.decode("utf-8"))
        return BytesHeaderParser(policy=default_policy).parsebytes(block)
    except Exception:
        return EmailMessage()


def _safe(call: object, default: str | None = None) -> str | None:
    try:
        value = call() if callable(call) else call
    except Exception:
        return default
    return None if value is None else str(value)


def _leaf_for(headers: Message, start: int, *, parent_digest: bool) -> _Leaf:
    content_type = _safe(headers.get_content_type, "text/plain") or "text/plain"
    if parent_digest and headers.get("content-type") is None:
        content_type = "message/rfc822"  # RFC 2046 §5.1.5: multipart/digest's default
    encoding = (_safe(lambda: headers.get("content-transfer-encoding"), "") or "7bit").strip()
    return _Leaf(
        content_type=content_type.lower(),
        charset=_safe(lambda: headers.get_content_charset()),
        filename=_safe(lambda: headers.get_filename()),
        disposition=_safe(lambda: headers.get_content_disposition()),
        encoding=encoding.lower(),
        start=start,
    )


def _boundary_of(headers: Message) -> bytes | None:
    if (_safe(headers.get_content_maintype, "") or "") != "multipart":
        return None
    boundary = _safe(lambda: headers.get_param("boundary"))
    if not boundary:
        return None
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        return boundary.encode("utf-8", "replace")


def _delimiter(line: bytes, boundaries: list[bytes]) -> tuple[int, bool] | None:
    """(index in the stack, closing?) when ``line`` is a boundary delimiter of an open
    multipart (the innermost first), else None."""
    if not line.startswith(b"--"):
        return None
    for i in range(len(boundaries) - 1, -1, -1):
        b = boundaries[i]
        if line.startswith(b"--" + b):
            rest = line[2 + len(b) :]
            closing = rest.startswith(b"--")
            if closing:
                rest = rest[2:]
            if not rest.strip():
                return i, closing
    return None


def scan(stream: BinaryIO) -> Scan:
    """Walk ``stream`` (a raw message, read from its current position to its end)."""
    total = hashlib.sha256()
    offset = 0
    defects: list[str] = []
    parts: list[Part] = []
    top: Message | None = None

    header_block: list[bytes] = []
    header_size = 0
    in_headers = True
    digest_parent = False
    # the stack of open multiparts: their boundaries; the entity being read
    boundaries: list[bytes] = []
    digest_flags: list[bool] = []
    leaf: _Leaf | None = None

    def close_leaf(end: int) -> None:
        nonlocal leaf
        if leaf is None:
            return
        part = leaf.finish(end)
        if leaf.broken:
            defects.append(f"part {len(parts) + 1}: its base64 body does not decode")
        leaf = None
        if len(parts) < MAX_PARTS:
            parts.append(part)
        elif len(parts) == MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} parts: the rest are not listed")

    def end_headers(body_start: int) -> None:
        nonlocal top, in_headers, leaf, header_block, header_size
        block = b"".join(header_block)
        if not block.isascii() and not _utf8(block) and not any("8-bit" in d for d in defects):
            defects.append("8-bit header bytes that are not UTF-8 (RFC 5322 §2.2, RFC 6532 §3)")
        headers = _parse_headers(block)
        header_block = []
        header_size = 0
        in_headers = False
        if top is None:
            top = headers
        boundary = _boundary_of(headers)
        if boundary is not None and len(boundaries) < MAX_DEPTH:
            boundaries.append(boundary)
            digest_flags.append((_safe(headers.get_content_subtype, "") or "") == "digest")
            return
        if boundary is not None:
            defects.append(f"multiparts nested deeper than {MAX_DEPTH}: read as one part")
        leaf = _leaf_for(headers, body_start, parent_digest=digest_parent)

    for line in _lines(stream):
        total.update(line)
        start = offset
        offset += len(line)
        if in_headers:
            stripped = line.rstrip(b"\r\n")
            if not stripped:
                end_headers(offset)
                continue
            delimiter = _delimiter(line, boundaries) if boundaries else None
            if delimiter is None and header_size + len(line) <= MAX_HEADER_BLOCK:
                header_block.append(line)
                header_size += len(line)
                continue
            if delimiter is None:
                defects.append("a header block over 256 KiB: the rest is read as body")
                end_headers(start)
                if leaf is not None:
                    leaf.feed(line)
                continue
            defects.append("a part's headers end without a blank line")
            end_headers(start)
            # the delimiter is handled below, as a body line
        delimiter = _delimiter(line, boundaries) if boundaries else None
        if delimiter is None:
            if leaf is not None:
                leaf.feed(line)
            continue
        level, closing = delimiter
        if leaf is not None:
            close_leaf(start - len(leaf.held_break))
        if len(boundaries) - 1 > level:
            defects.append("a nested multipart was not closed before its parent's boundary")
        del boundaries[level + 1 :]
        del digest_flags[level + 1 :]
        if closing:
            boundaries.pop()
            digest_flags.pop()
            continue
        in_headers = True
        digest_parent = digest_flags[-1]

    if in_headers and (top is None or header_block):  # a message of headers only is fine
        if top is not None:
            defects.append("the message ends inside a part's header block")
        end_headers(offset)
    if leaf is not None:  # the end of the message: its last line break is the body's own
        leaf.feed(b"")
        close_leaf(offset)
    if boundaries:
        defects.append("a multipart is not closed (its final boundary is missing)")
    return Scan(
        headers=top if top is not None else EmailMessage(),
        parts=tuple(parts),
        size=offset,
        sha256=total.hexdigest(),
        defects=tuple(defects),
    )
