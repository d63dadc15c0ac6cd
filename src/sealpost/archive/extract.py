"""The searchable text of an archived message: subject, body text, attachment names, and the
text of attached PDFs and text files, each part read from the stored bytes by the offsets
``mime_scan`` recorded (one part at a time, never the whole message in memory).

HTML is turned into its text with selectolax (Lexbor, a maintained HTML5 parser): what a
reader sees, not tag or attribute names, scripts or styles.  PDFs are read by PDFium in a
process of its own (``pdf_text.py``) under a size limit, a page cap, a memory limit, a CPU-time
limit and a wall-clock budget, so a hostile file cannot hang or exhaust the indexer.

Nothing is skipped silently: a file whose text could not be read (damaged, encrypted, too big,
too slow, a scan without a text layer, a document format not read here) is a :class:`Problem`
naming the file and why; the message is then indexed ``partial`` and listed by index-health.
Images, audio and other non-documents are found by their names only (they have no text).
"""

from __future__ import annotations

import binascii
import codecs
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from sealpost.archive.mime_scan import scan

PDF_SCRIPT = Path(__file__).with_name("pdf_text.py")

MAX_TEXT_PART_BYTES = 4 * 1024 * 1024
"""Decoded bytes read of one text or HTML part; beyond, the rest is not indexed (a problem)."""
MAX_INDEXED_CHARS = 300_000
"""Characters of body and attachment text indexed per message: a PostgreSQL tsvector must
stay under 1 MB (docs: "Text Search Types"), and a search index is not a copy of the archive."""
MAX_NESTED_BYTES = 10 * 1024 * 1024
"""A forwarded message (message/rfc822 part) up to this size is read for its text too."""
MAX_NESTING = 3


@dataclass(frozen=True)
class PdfLimits:
    """What reading one attached PDF may cost."""

    max_bytes: int = 25 * 1024 * 1024
    max_pages: int = 300
    max_chars: int = 200_000
    timeout_seconds: float = 20.0
    memory_mb: int = 1024
    message_budget_seconds: float = 60.0
    """All PDFs of one message together; those not reached in time are problems."""


@dataclass(frozen=True)
class Problem:
    """A file (or part) whose text is not in the index, and why."""

    file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


@dataclass
class Extracted:
    subject: str
    body: str = ""
    files: str = ""
    """Attachment names and the text read from attached files."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "partial" if self.problems else "indexed"

    def error(self) -> str | None:
        """``index_error``: the problems as JSON (None when there is none)."""
        if not self.problems:
            return None
        return json.dumps([p.as_dict() for p in self.problems[:100]], ensure_ascii=False)


_SPACE = re.compile(r"\s+")

OFFICE_TYPES = re.compile(
    r"^application/(msword|rtf|vnd\.ms-|vnd\.openxmlformats-officedocument\.|vnd\.oasis\.opendocument\.)"
)
OFFICE_NAMES = re.compile(r"\.(docx?|xlsx?|pptx?|od[tsp]|rtf)$", re.IGNORECASE)


def clean(text: str) -> str:
    """NFC (PDFium and some mailers give decomposed accents; PostgreSQL's ``unaccent`` maps
    composed ones) and runs of white space as one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def html_text(html: str) -> str:
    """What a reader of the HTML sees: no tags, attributes, scripts or styles."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    tree.strip_tags(["script", "style", "noscript", "template"])
    return tree.text(separator=" ") or ""


def _decode_text(data: bytes, charset: str | None) -> str:
    if charset:
        try:
            # a text encoding only: "zlib", "hex" or "base64" are codecs too, but bytes ones
            # (their decode raises), and a sender must not keep a message out of the index
            if not codecs.lookup(charset)._is_text_encoding:
                charset = None
        except LookupError:
            charset = None
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except (LookupError, ValueError, TypeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def decoded_chunks(
    stream: BinaryIO, start: int, end: int, encoding: str, chunk: int = 1 << 16
) -> Iterator[bytes]:
    """The decoded bytes of a part's body (``start``..``end`` in the raw message), in chunks
    (RFC 2045 §6.7, §6.8; an undecodable base64 remainder is dropped, as mime_scan noted)."""
    stream.seek(start)
    remaining = max(0, end - start)
    pending = b""
    while remaining > 0:
        raw = stream.read(min(chunk, remaining))
        if not raw:
            break
        remaining -= len(raw)
        if encoding == "base64":
            data = pending + raw.translate(None, b" \t\r\n")
            usable = len(data) - len(data) % 4
            pending = data[usable:]
            try:
                yield binascii.a2b_base64(data[:usable])
            except binascii.Error:
                return
        elif encoding == "quoted-printable":
            data = pending + raw
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut:
                yield binascii.a2b_qp(data[:cut])
        else:
            yield raw
    if pending:
        if encoding == "base64":
            try:
                yield binascii.a2b_base64(pending + b"=" * (-len(pending) % 4))
            except binascii.Error:
                return
        else:
            yield binascii.a2b_qp(pending)


def _read_capped(chunks: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    out = bytearray()
    for piece in chunks:
        out += piece
        if len(out) > limit:
            return bytes(out[:limit]), True
    return bytes(out), False


def pdf_text(path: str, limits: PdfLimits, timeout: float) -> tuple[str | None, str | None]:
    """(text, None) or (text or None, why it is not (all) there), PDFium in a child process."""
    cpu = int(timeout) + 1
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                str(PDF_SCRIPT),
                path,
                str(limits.max_pages),
                str(limits.max_chars),
                str(limits.memory_mb),
                str(cpu),
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"reading it took longer than {timeout:g} s"
    try:
        result: dict[str, Any] = json.loads(done.stdout or b"null") or {}
    except ValueError:
        result = {}
    if "error" in result:
        return None, str(result["error"])
    if "text" not in result:
        if done.returncode < 0:  # killed by a signal: SIGXCPU, or an abort short of memory
            return None, f"the PDF reader stopped (signal {-done.returncode}: time or memory limit)"
        return None, f"the PDF reader failed (exit {done.returncode})"
    text = clean(str(result["text"]))
    if not text:
        return None, "it has no text layer (a scan?): only its name is searchable"
    if result.get("truncated"):
        pages, read = result.get("pages"), result.get("read")
        return (
            text,
            f"only its first {read} of {pages} pages (or {limits.max_chars} characters) "
            "are indexed",
        )
    return text, None


class Extractor:
    """Turns an archived message (its row and its stored bytes) into :class:`Extracted`."""

    def __init__(self, pdf: PdfLimits | None = None) -> None:
        self.pdf = pdf or PdfLimits()

    def extract(
        self,
        subject: str,
        attachment_names: list[str],
        parts: list[dict[str, Any]],
        open_raw: Callable[[], AbstractContextManager[BinaryIO]],
    ) -> Extracted:
        out = Extracted(subject=clean(subject))
        bodies: list[str] = []
        files: list[str] = [clean(n) for n in attachment_names if n]
        deadline = time.monotonic() + self.pdf.message_budget_seconds
        with open_raw() as stream:
            self._parts(stream, parts, bodies, files, out, deadline, depth=0)
        out.body, body_cut = _clip(" ".join(b for b in bodies if b), MAX_INDEXED_CHARS)
        out.files, files_cut = _clip(
            " ".join(f for f in files if f), max(MAX_INDEXED_CHARS - len(out.body), 10_000)
        )
        if body_cut or files_cut:
            out.problems.append(
                Problem(
                    "(message)",
                    f"text beyond {MAX_INDEXED_CHARS} characters is not indexed",
                )
            )
        return out

    def _parts(
        self,
        stream: BinaryIO,
        parts: list[dict[str, Any]],
        bodies: list[str],
        files: list[str],
        out: Extracted,
        deadline: float,
        depth: int,
    ) -> None:
        plain: list[str] = []
        html: list[str] = []
        for number, part in enumerate(parts, start=1):
            ctype = (part.get("content_type") or "text/plain").lower()
            name = part.get("filename") or ""
            attachment = bool(name) or part.get("disposition") == "attachment"
            label = name or f"part {number} ({ctype})"
            start, end = int(part["body_start"]), int(part["body_end"])
            encoding = (part.get("transfer_encoding") or "7bit").lower()
            if ctype in ("text/plain", "text/html", "text/csv", "text/markdown", "text/enriched"):
                data, cut = _read_capped(
                    decoded_chunks(stream, start, end, encoding), MAX_TEXT_PART_BYTES
                )
                text = _decode_text(data, part.get("charset"))
                if ctype == "text/html":
                    text = html_text(text)
                text = clean(text)
                if cut:
                    out.problems.append(
                        Problem(label, f"only its first {MAX_TEXT_PART_BYTES} bytes are indexed")
                    )
                if attachment:
                    files.append(text)
                else:
                    (html if ctype == "text/html" else plain).append(text)
            elif ctype == "application/pdf" or (
                name.lower().endswith(".pdf") and ctype == "application/octet-stream"
            ):
                files.append(self._pdf(stream, part, label, start, end, encoding, out, deadline))
            elif ctype == "message/rfc822" and depth < MAX_NESTING:
                self._nested(
                    stream, part, label, start, end, encoding, bodies, files, out, deadline, depth
                )
            elif OFFICE_TYPES.match(ctype) or OFFICE_NAMES.search(name):
                out.problems.append(
                    Problem(label, f"its format ({ctype}) is not read: only its name is searchable")
                )
        # multipart/alternative: the HTML adds nothing when the plain text says as much
        plain_size = sum(len(p) for p in plain)
        html_size = sum(len(h) for h in html)
        bodies.extend(plain)
        if html and plain_size < html_size // 2:
            bodies.extend(html)

    def _pdf(
        self,
        stream: BinaryIO,
        part: dict[str, Any],
        label: str,
        start: int,
        end: int,
        encoding: str,
        out: Extracted,
        deadline: float,
    ) -> str:
        size = int(part.get("size") or 0)
        if size > self.pdf.max_bytes:
            out.problems.append(
                Problem(
                    label, f"it is {size} bytes, over the {self.pdf.max_bytes}-byte limit for PDFs"
                )
            )
            return ""
        left = deadline - time.monotonic()
        if left < 1:
            out.problems.append(Problem(label, "not read: the message's time for PDFs was spent"))
            return ""
        fd, path = tempfile.mkstemp(prefix="sealpost-index-", suffix=".pdf")
        try:
            with os.fdopen(fd, "wb") as file:
                written = 0
                for piece in decoded_chunks(stream, start, end, encoding):
                    written += len(piece)
                    if written > self.pdf.max_bytes:
                        break
                    file.write(piece)
            text, why = pdf_text(path, self.pdf, min(self.pdf.timeout_seconds, left))
        finally:
            os.unlink(path)
        if why is not None:
            out.problems.append(Problem(label, why))
        return text or ""

    def _nested(
        self,
        stream: BinaryIO,
        part: dict[str, Any],
        label: str,
        start: int,
        end: int,
        encoding: str,
        bodies: list[str],
        files: list[str],
        out: Extracted,
        deadline: float,
        depth: int,
    ) -> None:
        """A forwarded message: its subject, text and attachments count as this one's."""
        data, cut = _read_capped(decoded_chunks(stream, start, end, encoding), MAX_NESTED_BYTES)
        if cut:
            out.problems.append(
                Problem(label, f"a message over {MAX_NESTED_BYTES} bytes: not read")
            )
            return
        inner = scan(BytesIO(data))
        bodies.append(clean(inner.header("subject") or ""))
        inner_parts: list[dict[str, Any]] = [
            {
                "content_type": p.content_type,
                "charset": p.charset,
                "filename": p.filename,
                "disposition": p.disposition,
                "transfer_encoding": p.transfer_encoding,
                "body_start": p.body_start,
                "body_end": p.body_end,
                "size": p.size,
            }
            for p in inner.parts
        ]
        files.extend(clean(str(p["filename"])) for p in inner_parts if p["filename"])
        self._parts(BytesIO(data), inner_parts, bodies, files, out, deadline, depth + 1)


def _clip(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit], True
