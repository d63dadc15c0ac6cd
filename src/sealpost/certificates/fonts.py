"""Fonts for the certificate, and text that any font can draw.

A judge must be able to read every character of a subject or address, and rendering must never
fail on one.  DejaVu Sans (when the system has it) covers Latin, Greek, Cyrillic and many
symbols; PDF core fonts cover Latin-1 only.  A character the chosen font lacks is written as
``<U+XXXX>`` rather than a blank box, and the exact text stays in the embedded ``original.eml``
and evidence files.
"""

from __future__ import annotations

import unicodedata
import weakref
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
)
_LATIN_1 = range(0x20, 0x100)
# Typographic characters core fonts lack but which have a faithful ASCII spelling.
_ASCII_SPELLING = {"—": "-", "–": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "..."}


@dataclass(frozen=True)
class FontSet:
    """Family names registered on one FPDF and the code points the text family can draw."""

    text: str
    mono: str
    coverage: Container[int]
    unicode: bool
    """True for TrueType (any code point the font has), False for Latin-1 core fonts."""

    def clean(self, value: str) -> str:
        """``value`` with control characters as spaces and undrawable ones as ``<U+XXXX>``."""
        out = []
        for char in value:
            if char == "\n":
                out.append(char)
            elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
                out.append(" ")
            elif ord(char) in self.coverage:
                out.append(char)
            elif not self.unicode and char in _ASCII_SPELLING:
                out.append(_ASCII_SPELLING[char])
            else:
                out.append(f"<U+{ord(char):04X}>")
        return "".join(out)


def _find(name: str) -> Path | None:
    for directory in _FONT_DIRS:
        path = directory / name
        if path.is_file():
            return path
    return None


def close_fonts(pdf: FPDF) -> None:
    """Close the font files fpdf2 left open: it closes those a page used when writing, not
    the registered ones nothing used (a leaked file per render, and a ResourceWarning)."""
    _close_all(pdf.fonts)


def _close_all(fonts: Mapping[str, object]) -> None:
    for font in list(fonts.values()):
        close = getattr(font, "close", None)
        if close is not None:
            close()


CORE_FONTS = FontSet(text="helvetica", mono="courier", coverage=_LATIN_1, unicode=False)
"""PDF core fonts: nothing to parse or embed, Latin-1 only."""


def fonts_for_text(pdf: FPDF, texts: Iterable[str]) -> FontSet:
    """Core fonts when every character of ``texts`` is Latin-1, else :func:`register_fonts`.

    Parsing the DejaVu files costs ~30 ms per render (fontTools decompiles their glyph and
    metric tables each time); a small drawing such as a signature's appearance, which usually
    holds a Latin name and a date, need not pay it."""
    if all(ord(c) in _LATIN_1 or c in "\n\t" for text in texts for c in text):
        return CORE_FONTS
    return register_fonts(pdf)


def register_fonts(pdf: FPDF) -> FontSet:
    """DejaVu Sans (+ Bold, + Mono) when installed, else Helvetica and Courier."""
    regular, bold = _find("DejaVuSans.ttf"), _find("DejaVuSans-Bold.ttf")
    mono = _find("DejaVuSansMono.ttf")
    if regular is None or bold is None or mono is None:
        return CORE_FONTS
    # whatever happens to this render (an exception before output), its files get closed
    weakref.finalize(pdf, _close_all, pdf.fonts)
    pdf.add_font("dejavu", "", regular)
    pdf.add_font("dejavu", "B", bold)
    pdf.add_font("dejavumono", "", mono)
    mono_cmap = pdf.fonts["dejavumono"].cmap  # type: ignore[union-attr]
    text_cmap = pdf.fonts["dejavu"].cmap  # type: ignore[union-attr]
    bold_cmap = pdf.fonts["dejavuB"].cmap  # type: ignore[union-attr]
    coverage = frozenset(text_cmap) & frozenset(bold_cmap) & frozenset(mono_cmap)
    return FontSet(text="dejavu", mono="dejavumono", coverage=coverage, unicode=True)
