"""Reading and incrementally updating an untrusted PDF, for the PAdES toolkit.

Every PAdES step appends an incremental update (ISO 32000-1 §7.5.6) so that earlier
signatures keep covering the bytes they signed; pyHanko's reader and incremental writer do
the work.  The PDFs come from users: a damaged or hostile file makes pyHanko raise almost any
exception type, so each helper here turns that into one
:class:`~sealpost.errors.InvalidInput` (422) with the reason, never a crash, and refuses
encrypted files (ISO 32000-1 §7.6), which are not signed here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import EmbeddedPdfSignature

from sealpost.errors import InvalidInput

__all__ = [
    "embedded_signatures",
    "field_names",
    "open_reader",
    "open_writer",
    "page_count",
    "sorted_box",
    "write",
]


def open_reader(pdf: bytes) -> PdfFileReader:
    """A non-strict reader whose catalog parsed; InvalidInput if not, or if encrypted."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        reader.root  # noqa: B018 - forces the catalog to parse
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from None
    if reader.encrypted:
        raise InvalidInput("the PDF is encrypted: encrypted PDFs cannot be signed here")
    return reader


def open_writer(pdf: bytes) -> IncrementalPdfFileWriter:
    """An incremental writer over ``pdf``, after the same checks as :func:`open_reader`."""
    open_reader(pdf)
    try:
        return IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from None


def write(writer: IncrementalPdfFileWriter) -> bytes:
    """The original bytes followed by the writer's incremental update."""
    out = io.BytesIO()
    try:
        writer.write(out)  # type: ignore[no-untyped-call]
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"the PDF cannot be updated: {exc}") from exc
    return out.getvalue()


def embedded_signatures(reader: PdfFileReader) -> list[EmbeddedPdfSignature]:
    """Every signature and document timestamp of the file, in file order."""
    try:
        return list(reader.embedded_signatures)
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(
            f"the PDF's signatures cannot be read: {type(exc).__name__}: {exc}"
        ) from None


def page_count(handler: Any) -> int:
    """``/Count`` of the page tree root (ISO 32000-1 §7.7.3.2)."""
    try:
        return int(handler.root["/Pages"]["/Count"])
    except (KeyError, TypeError, ValueError, PdfError) as exc:
        raise InvalidInput(f"the PDF has no readable page tree: {exc}") from None


def field_names(handler: Any) -> Iterator[str]:
    """Fully qualified names of every form field (any type), ISO 32000-1 §12.7.3.2; a
    cyclic or absurdly deep field tree is cut, not followed."""
    try:
        top = handler.root["/AcroForm"]["/Fields"]
    except (KeyError, TypeError):
        return
    stack: list[tuple[Any, str, int]] = [(ref, "", 0) for ref in top]
    seen: set[Any] = set()
    while stack:
        ref, parent, depth = stack.pop()
        key = getattr(ref, "reference", None) or id(ref)
        if key in seen or depth > 32:
            continue
        seen.add(key)
        node = ref.get_object() if hasattr(ref, "get_object") else ref
        if not isinstance(node, generic.DictionaryObject):
            continue
        partial = node.get("/T")
        name = f"{parent}.{partial}" if parent and partial is not None else str(partial or parent)
        if partial is not None:
            yield name
        stack += [(kid, name, depth + 1) for kid in node.get("/Kids", ())]


def sorted_box(box: Any) -> tuple[float, float, float, float]:
    """A PDF rectangle as (left, bottom, right, top): ISO 32000-1 §7.9.5 allows any corners."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
