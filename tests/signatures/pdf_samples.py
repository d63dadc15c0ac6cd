"""PDFs for the signing tests, generated here so each test says what its document contains.

``text_pdf`` writes text with fpdf2 and reports where it wrote it (in PDF points, origin
bottom-left), so anchor tests can compare PDFium's boxes with the truth; ``raw_pdf`` writes
objects by hand, for the malformed page trees fpdf2 refuses to produce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fpdf import FPDF

from sealpost.signatures.documents import ANCHOR_PATTERN

A4 = (595.28, 841.89)
LETTER = (612.0, 792.0)


@dataclass(frozen=True)
class Written:
    """A piece of text ``text_pdf`` wrote: its page (1-based) and its text's box in points.

    A line is reported whole and, when it holds ``{{signature:N}}`` anchors, each anchor again
    on its own (``anchor=True``) with the box of just that text."""

    page: int
    text: str
    box: tuple[float, float, float, float]
    anchor: bool = False


@dataclass(frozen=True)
class Line:
    """Text to write at (x, y) points from the page's top-left corner, as fpdf2 measures."""

    x: float
    y: float
    text: str
    size: float = 11


def text_pdf(
    pages: Sequence[Sequence[Line]],
    *,
    formats: Sequence[tuple[float, float]] = (),
    compress: bool = True,
) -> tuple[bytes, list[Written]]:
    """A PDF with one page per item of ``pages`` (A4 unless ``formats`` says otherwise) and
    where each line's text landed: its origin after fpdf2's cell margin, its string width and
    the cell's height, converted to bottom-left coordinates (see :class:`Written`)."""
    pdf = FPDF(unit="pt", format="A4")
    pdf.compress = compress
    pdf.set_auto_page_break(False)
    written = []
    for number, lines in enumerate(pages, start=1):
        size = formats[number - 1] if number <= len(formats) else A4
        pdf.add_page(format=size)
        for line in lines:
            pdf.set_font("helvetica", size=line.size)
            width = pdf.get_string_width(line.text)
            pdf.set_xy(line.x, line.y)
            pdf.cell(width, line.size, line.text)
            left = line.x + pdf.c_margin
            top = pdf.h - line.y
            written.append(Written(number, line.text, (left, top - line.size, left + width, top)))
            for match in ANCHOR_PATTERN.finditer(line.text):
                start = left + pdf.get_string_width(line.text[: match.start()])
                end = left + pdf.get_string_width(line.text[: match.end()])
                box = (start, top - line.size, end, top)
                written.append(Written(number, match.group(0), box, anchor=True))
    return bytes(pdf.output()), written


def raw_pdf(objects: Sequence[bytes], *, trailer: bytes = b"") -> bytes:
    """A PDF whose object ``n`` (1-based) is ``objects[n - 1]``, catalog first, with a correct
    cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer,
        xref,
    )
    return bytes(out)


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"


def one_page(page: bytes = b"/MediaBox [0 0 595 842]", *, count: int = 1) -> bytes:
    """A one-page document whose page dictionary holds ``page`` and whose tree says ``count``."""
    return raw_pdf(
        [
            CATALOG,
            b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % count,
            b"<< /Type /Page /Parent 2 0 R %s >>" % page,
        ]
    )


def no_pages() -> bytes:
    return raw_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"])


def encrypted(user_password: str) -> bytes:
    """An RC4/AES-encrypted PDF; with ``user_password=""`` any reader opens it silently."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(text="Confidential contract")
    pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    return bytes(pdf.output())
