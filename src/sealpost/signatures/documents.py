"""Intake of the PDFs to be signed: refuse early, with a message a developer can act on.

A document is accepted only if both engines that will handle it read it: pyHanko, which appends
each PAdES signature as an incremental update (ETSI EN 319 142-1, ISO 32000-1 §7.5.6), and PDFium,
which renders the pages the signer reviews and finds the text anchors that place signature
fields.  Refusing at upload costs the sender one clear error; accepting a document one of them
cannot read would fail later, in front of a signer, or produce a signature no reader validates.

A document that needs more memory than a reader may use is not "damaged": every broad
``except`` below lets MemoryError through, so that the worker process running the intake
(:mod:`sealpost.signatures.workers`) can tell the two apart.

The server never runs these functions itself on uploaded bytes: :mod:`sealpost.signatures.intake`
runs them in worker processes under a time and a memory limit, since a document can cost
minutes or gigabytes to read.  They stay plain functions (tests call them directly).

PDFium is not thread-safe (pypdfium2 says so: no two calls may run at once in a process), and a
process may call these from several threads, so every PDFium call here holds
:data:`PDFIUM_LOCK`.  Any other module calling pypdfium2 must hold it too.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped, unused-ignore]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped, unused-ignore]
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import MDPPerm, enumerate_sig_fields
from pyhanko.sign.validation import read_certification_data

from sealpost.errors import InvalidInput
from sealpost.signatures.active_content import Finding, find_active_content, refusal

MAX_DOCUMENT_BYTES = 25 * 1024 * 1024
ANCHOR_PATTERN = re.compile(r"\{\{signature:(\d+)\}\}")

PDFIUM_LOCK = threading.Lock()
"""Held around every PDFium call of the process: PDFium keeps global state and is not
thread-safe, and a race there is a crash of the whole server, not an exception."""

MAX_RENDER_PX = 10_000
"""Upper bound of a rendered page image's width and height, so that a page with an extreme
aspect ratio (a 3 pt wide strip) cannot make the server allocate gigabytes."""

_MAX_TREE_DEPTH = 64
_HEADER = b"%PDF-"
_HEADER_SEARCH = 1024  # readers accept the header within the first 1024 bytes (ISO 32000-1 H.3)


@dataclass(frozen=True)
class PageSize:
    """A page's size as shown (crop box, with /Rotate applied), in PDF points (1/72 in)."""

    width: float
    height: float


@dataclass(frozen=True)
class PdfInfo:
    """What intake learned about an accepted document."""

    sha256: str
    """Hex SHA-256 of the exact bytes: the digest the audit trail starts from."""
    size: int
    """Length in bytes."""
    pages: tuple[PageSize, ...]
    """One size per page, in page order."""
    has_signatures: bool
    """True when a signature field already holds a signature (or document timestamp): new
    signatures are appended without touching them, but the sender should know they exist."""
    active_content: tuple[Finding, ...] = ()
    """What :mod:`sealpost.signatures.active_content` found (accepted only when allowed)."""


@dataclass(frozen=True)
class Anchor:
    """Where a ``{{signature:N}}`` text anchor sits: the sender's mark for a signature field."""

    label: str
    """The N of ``{{signature:N}}``, as written (digits)."""
    page: int
    """1-based page number."""
    box: tuple[float, float, float, float]
    """(left, bottom, right, top) of the anchor's glyphs, in points of the page's user space
    (origin bottom-left), as a signature field's /Rect is written."""


# --- refusals ---------------------------------------------------------------------------------


def document_label(name: str) -> str:
    """The document's name for a message, quoted: control characters dropped, long names
    shortened."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in name).strip()
    if len(text) > 80:
        text = text[:79] + "…"
    return f'"{text or "document"}"'


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def _encrypted(label: str) -> InvalidInput:
    return InvalidInput(
        f"{label} is encrypted, and encrypted PDFs cannot be signed: remove the password "
        "(also an owner or permissions password, even if the file opens without one) and "
        "upload it again"
    )


def _damaged(label: str, data: bytes, engine: str, problem: BaseException | str) -> InvalidInput:
    detail = problem if isinstance(problem, str) else _short(problem)
    truncated = b"%%EOF" not in data[-1024:]
    why = (
        "it looks truncated (it does not end with %%EOF): the upload or download was probably "
        "cut short"
        if truncated
        else "its structure (cross-reference table or page tree) is broken"
    )
    return InvalidInput(
        f"{label} is a damaged PDF that cannot be read: {why}. Open it in a PDF viewer and "
        f"save or print it as a new PDF ({engine}: {detail})"
    )


# Magic numbers of what is most often sent instead of a PDF, and what to do about it.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, PPTX and ODT files are ZIP archives)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (DOC, XLS or PPT)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
)


def _looks_like(data: bytes) -> str:
    """Why ``data`` (which does not start with %PDF-) is not a PDF, and what to send instead."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return f"it looks like {what}; convert it to PDF and upload the PDF"
    text = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"jvberi0"):  # base64 of "%PDF-"
        return "it looks like a base64-encoded PDF; decode the base64 and upload the bytes"
    if text.startswith(b"data:"):
        return "it looks like a data: URL; upload the decoded PDF bytes, not the URL"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return (
            "it looks like an HTML page (often a login or error page fetched instead of the "
            "file); check the URL or request that produced it"
        )
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "it looks like an XML or HTML document; convert it to PDF and upload the PDF"
    if text.startswith((b"{", b"[")):
        return (
            "it looks like JSON (often an API error response saved instead of the file); check "
            "the request that produced it"
        )
    offset = data.find(_HEADER, 0, _HEADER_SEARCH)
    if offset > 0:
        return (
            f"{offset} bytes precede its %PDF- header (something was prepended to the file); "
            "upload the file exactly as saved"
        )
    return "it does not start with %PDF-"


# --- pyHanko's reading ------------------------------------------------------------------------


class _PageTreeError(Exception):
    """A page tree that pyHanko's page lookup (used to place fields) would get wrong."""


def _resolved(node: generic.DictionaryObject, key: str, default: Any) -> Any:
    """``node[key]`` with references resolved (``dict.get`` would not resolve them)."""
    try:
        return node[key]
    except KeyError:
        return default


def _box(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if len(value) != 4:
        raise _PageTreeError("a page box does not have 4 numbers")
    x1, y1, x2, y2 = (float(value[i]) for i in range(4))  # indexing resolves references
    return abs(x2 - x1), abs(y2 - y1)


def _declared_sizes(
    root: generic.DictionaryObject,
) -> tuple[list[tuple[float, float] | None], list[generic.IndirectObject]]:
    """(width, height) of each page's declared media and crop box, the smaller of the two, or
    None when neither is declared (readers then assume US Letter); and each page's reference.

    Walks the tree the way pyHanko finds a page by index (kids are indirect, /Count of each
    node says how many pages lie below it), once and in order, so that every page a signature
    field may be placed on is reachable; a node seen twice is refused rather than followed.
    """
    sizes: list[tuple[float, float] | None] = []
    pages: list[generic.IndirectObject] = []
    seen: set[generic.Reference] = set()

    def walk(ref: Any, media: Any, crop: Any, depth: int) -> int:
        if not isinstance(ref, generic.IndirectObject):
            raise _PageTreeError("a page tree node is not an indirect object")
        if ref.reference in seen:
            raise _PageTreeError("a page tree node appears twice")
        if depth > _MAX_TREE_DEPTH:
            raise _PageTreeError("the page tree is too deep")
        seen.add(ref.reference)
        node = ref.get_object()  # type: ignore[no-untyped-call]
        if not isinstance(node, generic.DictionaryObject):
            raise _PageTreeError("a page tree node is not a dictionary")
        media = _resolved(node, "/MediaBox", media)  # both inherited (ISO 32000-1 §7.7.3.4)
        crop = _resolved(node, "/CropBox", crop)
        node_type = _resolved(node, "/Type", None) if depth else "/Pages"
        if node_type == "/Page":
            boxes = [b for b in (_box(media), _box(crop)) if b is not None]
            sizes.append((min(w for w, _ in boxes), min(h for _, h in boxes)) if boxes else None)
            pages.append(ref)
            return 1
        if node_type != "/Pages":
            return 0  # pyHanko's lookup skips nodes of another type too
        kids = node["/Kids"]
        below = sum(walk(kids.raw_get(i), media, crop, depth + 1) for i in range(len(kids)))
        if int(node["/Count"]) != below:
            raise _PageTreeError(f"a /Count says {int(node['/Count'])} pages, there are {below}")
        return below

    walk(root.raw_get("/Pages"), None, None, 0)
    return sizes, pages


def _read_with_pyhanko(
    data: bytes, label: str
) -> tuple[list[tuple[float, float] | None], bool, tuple[Finding, ...]]:
    """Declared page sizes, whether a signature exists, and the active content found;
    refusals as :class:`InvalidInput`.

    Any exception of the parser is a refusal: on untrusted bytes pyHanko fails in many ways
    (its own errors, but also KeyError, TypeError, AssertionError, RecursionError).
    """
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
    except MemoryError:
        raise
    except Exception as exc:
        if re.search(rb"/Encrypt\b", data):
            raise _encrypted(label) from None
        raise _damaged(label, data, "pyHanko", exc) from None
    try:
        reader.trailer.raw_get("/Encrypt")
    except KeyError:
        pass
    except MemoryError:
        raise
    except Exception as exc:
        raise _damaged(label, data, "pyHanko", exc) from None
    else:
        raise _encrypted(label)
    try:
        sizes, pages = _declared_sizes(reader.root)
        has_signatures = next(enumerate_sig_fields(reader, filled_status=True), None) is not None
        certification = read_certification_data(reader)
        active = find_active_content(reader.root, reader.trailer.raw_get("/Root"), pages)
    except _PageTreeError as exc:
        raise _damaged(label, data, "pyHanko", f"page tree: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise _damaged(label, data, "pyHanko", exc) from None
    if certification is not None and certification.permission == MDPPerm.NO_CHANGES:
        raise InvalidInput(
            f"{label} is certified with “no changes allowed” (a DocMDP certification signature, "
            "P=1): any signature added to it would break that certification. Upload the "
            "document as it was before it was certified"
        )
    return sizes, has_signatures, active


# --- PDFium's reading -------------------------------------------------------------------------


@contextmanager
def _pdfium_document(data: bytes, label: str) -> Iterator[Any]:
    """The document open in PDFium, under :data:`PDFIUM_LOCK`, closed before the lock is released
    (pypdfium2 would otherwise close it from the garbage collector, in any thread)."""
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except MemoryError:
            raise
        except Exception as exc:
            if "password" in str(exc).lower():
                raise _encrypted(label) from None
            raise _damaged(label, data, "PDFium", exc) from None
        try:
            yield document
        finally:
            document.close()


def _pdfium_sizes(data: bytes, label: str) -> tuple[list[PageSize], int]:
    """Each page's size as PDFium shows it, and how many document-level JavaScript actions
    PDFium finds: a second opinion on the name tree, should the two parsers read the file
    differently."""
    with _pdfium_document(data, label) as document:
        sizes = []
        try:
            for index in range(len(document)):
                page = document.get_page(index)
                try:
                    sizes.append(PageSize(float(page.get_width()), float(page.get_height())))
                finally:
                    page.close()
            scripts = int(pdfium_c.FPDFDoc_GetJavaScriptActionCount(document.raw))
        except MemoryError:
            raise
        except Exception as exc:
            raise _damaged(label, data, "PDFium", exc) from None
        return sizes, scripts


# --- the public functions ---------------------------------------------------------------------


def inspect_pdf(
    data: bytes, *, name: str = "document", allow_active_content: bool = False
) -> PdfInfo:
    """Describe a document to be signed, or refuse it with :class:`InvalidInput`.

    ``name`` is how refusals call the document (its file name, for instance).  Refused: empty,
    over :data:`MAX_DOCUMENT_BYTES`, not a PDF, damaged (either engine fails to read it, or they
    disagree on its pages), encrypted in any way, certified against any change, without pages,
    with a page of no width or height, or, unless ``allow_active_content``, holding active
    content (:class:`~sealpost.signatures.active_content.ActiveContentRefused`, which names
    each finding).  Never raises anything else for any bytes, but MemoryError when the process
    may not use the memory reading them takes.
    """
    label = document_label(name)
    if not data:
        raise InvalidInput(f"{label} is empty (0 bytes): upload the PDF file's content")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(
            f"{label} is too large: {len(data)} bytes, and documents are limited to "
            f"{MAX_DOCUMENT_BYTES} bytes ({MAX_DOCUMENT_BYTES // 2**20} MiB); reduce the "
            "resolution of its images or split it into several documents"
        )
    data = bytes(data)
    if not data.startswith(_HEADER):
        raise InvalidInput(f"{label} is not a PDF: {_looks_like(data)}")
    declared, has_signatures, active = _read_with_pyhanko(data, label)
    if not declared:  # before PDFium, which refuses to open a document without pages at all
        raise InvalidInput(f"{label} has no pages: a document to sign needs at least one page")
    shown, scripts = _pdfium_sizes(data, label)
    if len(declared) != len(shown):
        raise _damaged(
            label, data, "page tree", f"pyHanko finds {len(declared)} pages, PDFium {len(shown)}"
        )
    for number, (box, size) in enumerate(zip(declared, shown, strict=True), start=1):
        width, height = box if box is not None else (size.width, size.height)
        if not all(math.isfinite(v) and v > 0 for v in (width, height, size.width, size.height)):
            raise InvalidInput(
                f"{label} has a page of size 0 (page {number} is {width:g} × {height:g} points): "
                "every page needs a width and a height; re-export the document"
            )
    if scripts > 0 and not any(f.kind == "javascript" for f in active):
        plural = "s" if scripts != 1 else ""
        text = (
            f"JavaScript in the document name tree, as PDFium reads it ({scripts} script{plural})"
        )
        active += (Finding("javascript", text),)
    if active and not allow_active_content:
        raise refusal(label, name, active)
    return PdfInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        pages=tuple(shown),
        has_signatures=has_signatures,
        active_content=active,
    )


def _page_text(textpage: Any, count: int) -> str:
    """The page's characters, one per index of PDFium's character list (unlike ``get_text_range``,
    which may add or drop characters and so lose the mapping to character boxes)."""
    chars = []
    for index in range(count):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, index)
        chars.append(chr(code) if 0 < code < 0x110000 else "\ufffd")
    return "".join(chars)


def _anchor_box(textpage: Any, start: int, end: int) -> tuple[float, float, float, float] | None:
    boxes = []
    for index in range(start, end):
        try:
            boxes.append(textpage.get_charbox(index))
        except pdfium.PdfiumError:
            continue  # a character PDFium generated (a space or line break) has no box
    if not boxes:
        return None
    return (
        round(min(b[0] for b in boxes), 2),
        round(min(b[1] for b in boxes), 2),
        round(max(b[2] for b in boxes), 2),
        round(max(b[3] for b in boxes), 2),
    )


def find_anchors(data: bytes) -> list[Anchor]:
    """Every ``{{signature:N}}`` in the document's text, in page and reading order.

    Senders write these (often in white or tiny type) where a signer's signature goes, so that
    a template places its own fields.  An anchor broken across two lines is not found.
    """
    label = document_label("document")
    anchors = []
    with _pdfium_document(bytes(data), label) as document:
        try:
            for index in range(len(document)):
                page = document.get_page(index)
                textpage = page.get_textpage()
                try:
                    text = _page_text(textpage, textpage.count_chars())
                    for match in ANCHOR_PATTERN.finditer(text):
                        box = _anchor_box(textpage, match.start(), match.end())
                        if box is not None:
                            anchors.append(Anchor(match.group(1), index + 1, box))
                finally:
                    textpage.close()
                    page.close()
        except MemoryError:
            raise
        except Exception as exc:
            raise _damaged(label, data, "PDFium", exc) from None
    return anchors


def field_box_for(
    anchor: Anchor, page: PageSize, width: float = 180.0, height: float = 54.0
) -> tuple[float, float, float, float]:
    """A signature field's (left, bottom, right, top): its bottom-left at the anchor's
    bottom-left, cut to the page so that no part of the field lies off the page.

    Coordinates are the page's user space with the origin at the bottom-left corner, which is
    what generated documents have; a rotated page or one whose crop box does not start at the
    origin is not corrected for.
    """
    left = min(max(anchor.box[0], 0.0), page.width)
    bottom = min(max(anchor.box[1], 0.0), page.height)
    return (left, bottom, min(left + width, page.width), min(bottom + height, page.height))


def render_page_png(data: bytes, page: int, *, width_px: int = 1000) -> bytes:
    """A PNG of page ``page`` (1-based), ``width_px`` pixels wide, as the signer will see it.

    The signing page shows server-rendered images rather than the PDF itself, so that what the
    signer reviews does not depend on their browser's PDF viewer.  A page so tall that the image
    would exceed :data:`MAX_RENDER_PX` pixels is rendered smaller.
    """
    if not 1 <= width_px <= MAX_RENDER_PX:
        raise InvalidInput(f"width_px must be between 1 and {MAX_RENDER_PX}, not {width_px}")
    label = document_label("document")
    with _pdfium_document(bytes(data), label) as document:
        count = len(document)
        if not 1 <= page <= count:
            raise InvalidInput(
                f"page {page} does not exist: the document has {count} "
                f"page{'s' if count != 1 else ''}, numbered from 1"
            )
        try:
            document.init_forms()  # draw form fields that have no appearance stream too
            pdf_page = document.get_page(page - 1)
            try:
                page_width, page_height = pdf_page.get_width(), pdf_page.get_height()
                scale = min(width_px / page_width, MAX_RENDER_PX / page_height)
                bitmap = pdf_page.render(scale=scale)
                try:
                    image = bitmap.to_pil()
                    out = io.BytesIO()
                    image.save(out, format="PNG")
                finally:
                    bitmap.close()
            finally:
                pdf_page.close()
        except MemoryError:
            raise
        except Exception as exc:
            raise _damaged(label, data, "PDFium", exc) from None
    return out.getvalue()
