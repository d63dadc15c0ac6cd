"""The visible part of a signer's signature: what its widget shows.

A signature field's appearance stream (ISO 32000-1 §12.7.4.5, §12.5.5) is only a picture:
PAdES (ETSI EN 319 142-1) leaves it to the signing application, and nothing of the evidence
is in it: that is in the CMS.  :func:`render_appearance` draws it with
fpdf2 as a one-page PDF of the widget's size (the drawn image or typed text, a rule, the
signer's name, the time in UTC and how they were identified), and :func:`stamp_style` hands
that page to pyHanko, which imports it as the form XObject of the widget's normal appearance.

A drawn signature comes from the signer's browser: :func:`check_signature_image` refuses what
is not a PNG of sensible size before the signer's intent is even kept.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils import content, layout
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.stamp import StaticStampStyle

from sealpost.certificates.fonts import FontSet, close_fonts, fonts_for_text
from sealpost.errors import InvalidInput

__all__ = ["SignerAppearance", "check_signature_image", "render_appearance", "stamp_style"]

_MAX_IMAGE_PIXELS = 4_000 * 4_000
_BAD_IMAGE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
)
_SCRIPT_FONTS = (  # a script-like italic for typed signatures, where the system has one
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSerif-Italic.ttf"),
)


@dataclass(frozen=True)
class SignerAppearance:
    """What the visible signature shows; the signature's evidence is in the CMS, not here."""

    name: str
    """The signer's name."""
    signed_at: datetime
    """When the signer signed, timezone-aware; shown in UTC."""
    image_png: bytes | None
    """The drawn signature (PNG, transparency kept), or None."""
    typed: str | None
    """A typed signature, drawn in an italic serif font, when there is no image."""
    identification: str
    """One line, e.g. ``Identified by email OTP (j***@example.com)``."""


def render_appearance(appearance: SignerAppearance, width: float, height: float) -> bytes:
    """A one-page PDF of ``width`` x ``height`` points: the signature (drawn image, else the
    typed text in an italic serif), a rule, then the name, the time (UTC) and the
    identification line, each shrunk (then shortened) to fit the width."""
    if appearance.signed_at.tzinfo is None:
        raise InvalidInput("the signing time must be timezone-aware")
    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_margin(0)
    pdf.c_margin = 0
    pdf.set_auto_page_break(False)
    pdf.add_page()
    fonts = fonts_for_text(
        pdf, (appearance.name, appearance.identification, appearance.typed or "")
    )
    pad = min(4.0, width * 0.04, height * 0.04)
    size = max(1.0, min(7.5, height / 10))
    line = size * 1.25
    rule_y = max(pad, height - pad - 3 * line - pad / 2)
    area = (pad, pad, width - 2 * pad, rule_y - pad - pad / 2)
    if appearance.image_png is not None:
        _draw_image(pdf, appearance.image_png, area)
    elif appearance.typed:
        _draw_typed(pdf, fonts, appearance.typed, area)
    pdf.set_draw_color(110, 110, 110)
    pdf.set_line_width(0.4)
    pdf.line(pad, rule_y, width - pad, rule_y)
    pdf.set_text_color(40, 40, 40)
    when = appearance.signed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = (
        (appearance.name, "B"),
        (f"Signed {when}", ""),
        (appearance.identification, ""),
    )
    y = rule_y + pad / 2
    for text, style in lines:
        clean = fonts.clean(" ".join(text.split()))
        fitted = _fit_line(pdf, fonts.text, style, clean, size, width - 2 * pad)
        pdf.set_xy(pad, y)
        pdf.cell(w=width - 2 * pad, h=line, text=fitted)
        y += line
    data = bytes(pdf.output())
    close_fonts(pdf)
    return data


def check_signature_image(png: bytes) -> None:
    """Refuse (InvalidInput) what is not a readable PNG of a sensible size: checked before a
    signer's intent is kept, so a bad drawing never reaches the signing step."""
    try:
        with Image.open(io.BytesIO(png)) as img:
            if img.format != "PNG":
                raise InvalidInput("the drawn signature is not a PNG image")
            if img.width * img.height > _MAX_IMAGE_PIXELS:
                raise InvalidInput(f"the drawn signature is too large ({img.width}x{img.height})")
            img.load()
    except _BAD_IMAGE as exc:
        raise InvalidInput(f"the drawn signature is not a readable PNG image: {exc}") from None


def stamp_style(appearance_pdf: bytes) -> StaticStampStyle:
    """pyHanko's stamp style drawing ``appearance_pdf`` (from :func:`render_appearance`)
    edge to edge in the widget, without pyHanko's own border or text."""
    return StaticStampStyle(
        background=_ImportedAppearance(appearance_pdf),
        background_opacity=1.0,
        border_width=0,
        background_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID,
            y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins(),  # no margins: the appearance PDF is the box's size
        ),
    )


class _ImportedAppearance(content.PdfContent):
    """The first page of an in-memory PDF as a form XObject (pyHanko's ImportedPdfPage
    reads a file)."""

    def __init__(self, pdf: bytes) -> None:
        super().__init__()
        self.pdf = pdf

    def render(self) -> bytes:
        assert self.writer is not None  # set by the stamp before rendering
        xobject = self.writer.import_page_as_xobject(PdfFileReader(io.BytesIO(self.pdf)))
        self.set_resource(
            category=content.ResourceType.XOBJECT,
            name=pdf_name("/SealpostAppearance"),
            value=xobject,
        )
        x1, y1, x2, y2 = xobject.get_object()["/BBox"]
        self.box = layout.BoxConstraints(width=abs(x2 - x1), height=abs(y2 - y1))
        return b"/SealpostAppearance Do"


def _draw_image(pdf: FPDF, png: bytes, area: tuple[float, float, float, float]) -> None:
    check_signature_image(png)
    x, y, w, h = area
    if w > 0 and h > 0:
        pdf.image(io.BytesIO(png), x=x, y=y, w=w, h=h, keep_aspect_ratio=True)


def _draw_typed(
    pdf: FPDF, fonts: FontSet, typed: str, area: tuple[float, float, float, float]
) -> None:
    text = " ".join(typed.split())
    family, style = fonts.text, ""
    if not fonts.unicode:  # Latin-1 only: Times italic, no font file to parse
        family, style = "times", "I"
    for path in _SCRIPT_FONTS if fonts.unicode else ():
        if path.is_file():
            pdf.add_font("sealpostscript", "", str(path))
            cmap = pdf.fonts["sealpostscript"].cmap  # type: ignore[union-attr]
            if all(ord(c) in cmap for c in text):
                family = "sealpostscript"
            break
    if family != "sealpostscript":
        text = fonts.clean(text)
    x, y, w, h = area
    if w <= 0 or h <= 0 or not text:
        return
    fitted = _fit_line(pdf, family, style, text, h * 0.7, w)
    size = pdf.font_size_pt
    pdf.set_text_color(20, 30, 90)
    pdf.set_xy(x, y + (h - size) / 2)
    pdf.cell(w=w, h=size, text=fitted, align="C")


def _fit_line(pdf: FPDF, family: str, style: str, text: str, size: float, width: float) -> str:
    """Select the font at the size ``text`` fits ``width`` (down to half ``size``), then
    shorten it with an ellipsis if needed; returns the text to write."""
    pdf.set_font(family, style, size)
    natural = pdf.get_string_width(text)
    if natural > width > 0:
        pdf.set_font(family, style, max(size / 2, size * width / natural * 0.98))
    cmap = getattr(pdf.current_font, "cmap", None) or {}
    ellipsis = "…" if ord("…") in cmap else "..."
    shortened = text
    while shortened and pdf.get_string_width(shortened) > width:
        shortened = shortened[:-1]
        text = shortened.rstrip() + ellipsis
        if pdf.get_string_width(text) <= width:
            break
    return text
