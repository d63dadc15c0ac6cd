"""PDFs for the signing tests, generated here so each test says what its document contains.

``text_pdf`` writes text with fpdf2 and reports where it wrote it (in PDF points, origin
bottom-left), so anchor tests can compare PDFium's boxes with the truth; ``raw_pdf`` writes
objects by hand, for the malformed page trees fpdf2 refuses to produce, and ``hostile_pdfs``
the documents with active content that intake refuses (ISO 32000-1 §12.6 actions and their
triggers, XFA, attachments).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fpdf import FPDF
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

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


# --- active content ---------------------------------------------------------------------------


def document(
    catalog: bytes = b"", pages: Sequence[bytes] = (b"",), extra: Sequence[bytes] = ()
) -> bytes:
    """A PDF whose catalog (object 1) and pages (objects 3, 4, ...) hold the entries given, and
    whose further objects are ``extra``: numbered ``len(pages) + 3`` onwards (see
    :func:`first_extra`)."""
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(len(pages)))
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R %s >>" % catalog,
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
            *(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] %s >>" % p for p in pages),
            *extra,
        ]
    )


def first_extra(pages: int = 1) -> int:
    """The object number of ``extra[0]`` in :func:`document`."""
    return pages + 3


@dataclass(frozen=True)
class Hostile:
    """A document with active content, and what intake must say about it."""

    name: str
    pdf: bytes
    kind: str
    finding: str


def _stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(data), entries, data)


def _annotation(entries: bytes) -> bytes:
    return b"<< /Type /Annot /Rect [72 72 200 100] /P 3 0 R %s >>" % entries


def _hostile_raw() -> list[Hostile]:
    js = b"<< /S /JavaScript /JS (app.alert('signed?');) >>"
    launch = b"<< /S /Launch /F (C:\\\\Windows\\\\System32\\\\calc.exe) >>"
    elf = zlib.compress(b"\x7fELF\x02\x01\x01" + bytes(64))
    return [
        Hostile(
            "javascript-name-tree",
            document(b"/Names << /JavaScript 4 0 R >>", extra=[b"<< /Names [(init) 5 0 R] >>", js]),
            "javascript",
            "JavaScript in the document name tree (it runs when the document is opened)",
        ),
        Hostile(
            "open-action-javascript",
            document(b"/OpenAction 4 0 R", extra=[js]),
            "javascript",
            "the document runs JavaScript when it is opened",
        ),
        Hostile(
            "open-action-launch",
            document(b"/OpenAction %s" % launch),
            "launch",
            "the document opens a program or a file when it is opened",
        ),
        Hostile(
            "page-2-launches-on-open",
            document(pages=[b"", b"/AA << /O %s >>" % launch]),
            "launch",
            "page 2 opens a program or a file when the page is opened",
        ),
        Hostile(
            "document-script-before-close",
            document(b"/AA << /WC 4 0 R >>", extra=[js]),
            "javascript",
            "the document runs JavaScript before it is closed",
        ),
        Hostile(
            "field-format-script",
            document(
                b"/AcroForm << /Fields [4 0 R] >>",
                [b"/Annots [4 0 R]"],
                [
                    _annotation(
                        b"/Subtype /Widget /FT /Tx /T (Total) "
                        b"/AA << /F << /S /JavaScript /JS (event.value = '0.00';) >> >>"
                    )
                ],
            ),
            "javascript",
            "the form field “Total” on page 1 runs JavaScript when its value is formatted for "
            "display",
        ),
        Hostile(
            "field-off-the-pages",
            document(
                b"/AcroForm << /Fields [4 0 R] >>",
                extra=[b"<< /FT /Tx /T (Hidden) /AA << /K 5 0 R >> >>", js],
            ),
            "javascript",
            "the form field “Hidden” runs JavaScript when a key is typed in it",
        ),
        Hostile(
            "button-submits-form",
            document(
                b"/AcroForm << /Fields [4 0 R] >>",
                [b"/Annots [4 0 R]"],
                [
                    _annotation(
                        b"/Subtype /Widget /FT /Btn /Ff 65536 /T (Send) "
                        b"/A << /S /SubmitForm /F << /FS /URL /F (https://collect.example/) >> >>"
                    )
                ],
            ),
            "submit_form",
            "the form field “Send” on page 1 sends form data to an address when clicked",
        ),
        Hostile(
            "link-to-another-file",
            document(
                pages=[b"/Annots [4 0 R]"],
                extra=[
                    _annotation(b"/Subtype /Link /A << /S /GoToR /F (terms.pdf) /D [0 /Fit] >>")
                ],
            ),
            "external_document",
            "a link on page 1 opens another PDF file when clicked",
        ),
        Hostile(
            "link-to-an-embedded-document",
            document(
                pages=[b"/Annots [4 0 R]"],
                extra=[
                    _annotation(
                        b"/Subtype /Link /A << /S /GoToE /T << /R /C /N (annex) >> /D [0 /Fit] >>"
                    )
                ],
            ),
            "external_document",
            "a link on page 1 opens another (embedded) PDF document when clicked",
        ),
        Hostile(
            "bookmark-imports-data",
            document(
                b"/Outlines 4 0 R",
                extra=[
                    b"<< /Type /Outlines /First 5 0 R /Last 5 0 R /Count 1 >>",
                    b"<< /Title (Terms) /Parent 4 0 R /A << /S /ImportData /F (values.fdf) >> >>",
                ],
            ),
            "import_data",
            "the bookmark “Terms” fills its form from another file when clicked",
        ),
        Hostile(
            "link-switches-layers",
            document(
                pages=[b"/Annots [4 0 R]"],
                extra=[_annotation(b"/Subtype /Link /A << /S /SetOCGState /State [/Toggle] >>")],
            ),
            "changes_display",
            "a link on page 1 switches layers of content on or off when clicked",
        ),
        Hostile(
            "page-opens-a-web-address",
            document(pages=[b"/AA << /O << /S /URI /URI (https://tracker.example/open) >> >>"]),
            "web_address",
            "page 1 opens a web address when the page is opened",
        ),
        Hostile(
            "script-chained-after-navigation",
            document(b"/OpenAction << /S /GoTo /D [3 0 R /Fit] /Next [4 0 R] >>", extra=[js]),
            "javascript",
            "the document runs JavaScript when it is opened",
        ),
        Hostile(
            "rendition-with-script",
            document(
                pages=[b"/Annots [4 0 R]"],
                extra=[_annotation(b"/Subtype /Link /A << /S /Rendition /OP 0 /JS (this.x=1) >>")],
            ),
            "javascript",
            "a link on page 1 runs JavaScript when clicked",
        ),
        Hostile(
            "rich-media",
            document(pages=[b"/Annots [4 0 R]"], extra=[_annotation(b"/Subtype /RichMedia")]),
            "rich_media",
            "page 1 has embedded rich media (Flash, video or 3D that runs its own code)",
        ),
        Hostile(
            "screen-player",
            document(pages=[b"/Annots [4 0 R]"], extra=[_annotation(b"/Subtype /Screen")]),
            "media",
            "page 1 has a media player (Screen annotation)",
        ),
        Hostile(
            "xfa-form",
            document(
                b"/AcroForm << /Fields [] /XFA 4 0 R >>",
                extra=[_stream(b"<xdp:xdp xmlns:xdp='http://ns.adobe.com/xdp/'/>")],
            ),
            "xfa",
            "an XFA form: its own layout and scripts replace the pages",
        ),
        Hostile(
            "attached-program-by-name",
            document(
                b"/Names << /EmbeddedFiles << /Names [(setup.exe) 4 0 R] >> >>",
                extra=[b"<< /Type /Filespec /F (setup.exe) /EF << /F 5 0 R >> >>", _stream(b"hi")],
            ),
            "executable_attachment",
            "the attachment “setup.exe” is a program: its name ends in .exe",
        ),
        Hostile(
            "attached-program-by-content",
            document(
                pages=[b"/Annots [4 0 R]"],
                extra=[
                    _annotation(
                        b"/Subtype /FileAttachment /FS << /Type /Filespec /UF (data.bin) "
                        b"/EF << /F 5 0 R >> >>"
                    ),
                    _stream(elf, b"/Filter /FlateDecode"),
                ],
            ),
            "executable_attachment",
            "the attachment “data.bin” (an annotation (FileAttachment) on page 1) is a program: "
            "its content is a Linux or Unix program",
        ),
    ]


def with_catalog_entries(pdf: bytes, entries: dict[str, Any]) -> bytes:
    """``pdf`` with ``entries`` added to its catalog in an incremental update by pyHanko's
    writer, as a tool that adds a script to an existing document would."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    for key, value in entries.items():
        writer.root[key] = value
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _hostile_written() -> Hostile:
    """A real (fpdf2) contract to which pyHanko's writer adds a script run on opening."""
    pdf, _ = text_pdf([[Line(72, 72, "Contract")]])
    action = generic.DictionaryObject(
        {
            generic.NameObject("/S"): generic.NameObject("/JavaScript"),
            generic.NameObject("/JS"): generic.TextStringObject("this.print();"),
        }
    )
    return Hostile(
        "contract-with-script-added",
        with_catalog_entries(pdf, {"/OpenAction": action}),
        "javascript",
        "the document runs JavaScript when it is opened",
    )


def hostile_pdfs() -> list[Hostile]:
    """One document per kind of active content intake refuses (several for some kinds)."""
    return [*_hostile_raw(), _hostile_written()]


def clean_interactive_pdf() -> bytes:
    """A document with what intake allows: a web link to click, a link within the document,
    bookmarks, and an attachment that is not a program (an invoice's XML, as Factur-X)."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.start_section("Terms")
    pdf.cell(text="See https://example.com/terms")
    pdf.link(10, 10, 60, 10, "https://example.com/terms")
    annex = pdf.add_link()
    pdf.link(10, 30, 60, 10, annex)
    pdf.add_page()
    pdf.start_section("Annex")
    pdf.set_link(annex, page=2)
    pdf.cell(text="Annex")
    pdf.embed_file(
        bytes=b"<?xml version='1.0'?><Invoice/>",
        basename="factur-x.xml",
        mime_type="text/xml",
    )
    return bytes(pdf.output())


# --- documents that cost more to read than they weigh (issue 12: resource exhaustion) ---------


def many_annotations(count: int) -> bytes:
    """One page whose dictionary holds ``count`` direct link annotations (31 bytes each):
    pyHanko parses such a dictionary at about 0.25 ms per annotation, so 300,000 of them (9 MB)
    cost over a minute of CPU before any check starts."""
    annotations = b"<</Subtype/Link/Rect[0 0 1 1]>>" * count
    return raw_pdf(
        [
            CATALOG,
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [%s] >>" % annotations,
        ]
    )


def inflating(size: int, chunk: int = 1 << 20) -> bytes:
    """zlib data (RFC 1950) that inflates to ``size`` spaces (a multiple of ``chunk``), built
    in milliseconds: a fully flushed deflate block of one chunk repeated, and the Adler-32 of
    the whole computed in closed form, so nothing of the ``size`` bytes is ever produced."""
    count = size // chunk
    block = b" " * chunk
    deflate = zlib.compressobj(9)
    first = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()[:-4]  # the last (empty) block; its Adler-32 follows
    length = count * chunk
    a = (1 + 32 * length) % 65521
    b = (length + 32 * length * (length + 1) // 2) % 65521
    return first + again * (count - 1) + end + ((b << 16) | a).to_bytes(4, "big")


def _bomb(page_entries: bytes, *objects: bytes) -> bytes:
    return raw_pdf(
        [
            CATALOG,
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] %s >>" % page_entries,
            *objects,
        ]
    )


def content_bomb(size: int) -> bytes:
    """One page whose content stream inflates to ``size`` bytes (1 GiB: a 1 MB file): PDFium
    inflates a page's content when it loads the page, as intake does for each page's size."""
    data = inflating(size)
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data)
    return _bomb(b"/Contents 4 0 R", stream)


def image_bomb(side: int, images: int = 1) -> bytes:
    """One page covered by ``images`` images, each ``side`` x ``side`` RGB pixels of
    Flate-compressed spaces (26,000: 2 GB of pixels in a 2 MB stream; PDFium skips an image of
    more than 2**31 bytes).  Intake never decodes images, so it accepts the document; drawing
    the page decodes every pixel (PDFium streams and scales them down: seconds of CPU per image
    rather than memory)."""
    data = inflating(side * side * 3)
    names = b"".join(b"/Im%d %d 0 R " % (i, 5 + i) for i in range(images))
    content = b"".join(b"q 595 0 0 842 0 0 cm /Im%d Do Q " % i for i in range(images))
    image = (
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
        % (side, side, len(data), data)
    )
    return _bomb(
        b"/Resources << /XObject << %s>> >> /Contents 4 0 R" % names,
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        *[image] * images,
    )
