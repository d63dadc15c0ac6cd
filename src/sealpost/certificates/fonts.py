"""Fonts for the certificate, and text that any font can draw.

A judge must be able to read every character of a subject or address, and rendering must never
fail on one.  DejaVu Sans (when the system has it) covers Latin, Greek, Cyrillic and many
symbols; PDF core fonts cover Latin-1 only.  A character the chosen font lacks is written as
``<U+XXXX>`` rather than a blank box, and the exact text stays in the embedded ``original.eml``
and evidence files.
"""

from __future__ import annotations

import io
import threading
import unicodedata
import weakref
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fontTools import subset as ftsubset
from fontTools import ttLib
from fpdf import FPDF
from fpdf.fonts import SubsetMap, TTFFont

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


@dataclass(frozen=True)
class _Parsed:
    """One font file parsed once per process: fpdf2's metrics (cmap, widths, glyph ids,
    descriptor), read-only from then on, and the file's bytes for each document's own copy."""

    template: TTFFont
    data: bytes
    small: bytes
    """The font cut down to :data:`_COMMON` (names kept): what most certificates draw."""
    small_glyphs: frozenset[str]


_parsed: dict[Path, _Parsed] = {}
_parsing = threading.Lock()


def _parse(path: Path) -> _Parsed:
    """fontTools decompiles the cmap and hmtx of each DejaVu file in ``TTFFont.__init__``
    (~40 % of a certificate's CPU when done for every render): once per process instead."""
    with _parsing:
        found = _parsed.get(path)
        if found is None:
            data = path.read_bytes()
            template = TTFFont(FPDF(), path, "template", "")
            template.close()  # the metrics stay; each document opens its own copy
            small, glyphs = _cut(data)
            found = _parsed[path] = _Parsed(template, data, small, glyphs)
        return found


_COMMON = (*range(0x20, 0x250), *range(0x2000, 0x2070), 0x20AC, 0x2122, 0x2190, 0x2192)
"""Latin-1, Latin Extended-A and -B, general punctuation, the euro and a few arrows."""


def _cut(data: bytes) -> tuple[bytes, frozenset[str]]:
    """``data`` subset to :data:`_COMMON` once per process, keeping glyph names and with fpdf2's
    own subsetting options, so that fpdf2's subsetting of a document that draws only these
    works on ~700 glyphs instead of the ~6,000 of DejaVu Sans (it decompiles every table it
    keeps: a fifth of a certificate's CPU with the whole font)."""
    font = ttLib.TTFont(io.BytesIO(data), recalcTimestamp=False)
    options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True, glyph_names=True)
    options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta"]
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(unicodes=_COMMON)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue(), frozenset(font.getGlyphOrder())


def prepare_output(pdf: FPDF) -> None:
    """Before ``pdf.output()``: give each cached font the smallest file that has every glyph
    this document used (the cut-down one usually, else the whole font); the glyphs written
    are the same either way, only fpdf2's subsetting has less to read."""
    for font in pdf.fonts.values():
        if not isinstance(font, TTFFont):
            continue
        parsed = _parsed.get(Path(font.ttffile))
        if parsed is None:
            continue
        used = font.subset.get_all_glyph_names()
        if set(used) <= parsed.small_glyphs:
            font.ttfont.close()
            font.ttfont = ttLib.TTFont(io.BytesIO(parsed.small), recalcTimestamp=False, lazy=True)


def _add_font(pdf: FPDF, family: str, style: str, path: Path) -> None:
    """``pdf.add_font(family, style, path)`` without parsing the file again: the metrics are
    shared, while what a document changes is its own (the subset of glyphs it used, and the
    fontTools object that writing the PDF subsets in place, opened lazily from memory)."""
    parsed = _parse(path)
    font = TTFFont.__new__(TTFFont)
    for slot in TTFFont.__slots__:
        if hasattr(parsed.template, slot):
            setattr(font, slot, getattr(parsed.template, slot))
    fontkey = f"{family.lower()}{style}"
    font.i = len(pdf.fonts) + 1
    font.fontkey = fontkey
    font.ttfont = ttLib.TTFont(io.BytesIO(parsed.data), recalcTimestamp=False, lazy=True)
    font._hbfont = None
    font.missing_glyphs = []
    font.biggest_size_pt = 0
    font.subset = SubsetMap(font)
    pdf.fonts[fontkey] = font


def register_fonts(pdf: FPDF) -> FontSet:
    """DejaVu Sans (+ Bold, + Mono) when installed, else Helvetica and Courier; each file is
    parsed once per process (:func:`_parse`)."""
    regular, bold = _find("DejaVuSans.ttf"), _find("DejaVuSans-Bold.ttf")
    mono = _find("DejaVuSansMono.ttf")
    if regular is None or bold is None or mono is None:
        return CORE_FONTS
    # whatever happens to this render (an exception before output), its fonts get closed
    weakref.finalize(pdf, _close_all, pdf.fonts)
    _add_font(pdf, "dejavu", "", regular)
    _add_font(pdf, "dejavu", "B", bold)
    _add_font(pdf, "dejavumono", "", mono)
    return _coverage(regular, bold, mono)


_coverages: dict[tuple[Path, ...], FontSet] = {}


def _coverage(*paths: Path) -> FontSet:
    """The code points all three fonts draw (the FontSet), computed once per process."""
    found = _coverages.get(paths)
    if found is None:
        cmaps = [frozenset(_parse(path).template.cmap) for path in paths]
        coverage = frozenset.intersection(*cmaps)
        found = FontSet(text="dejavu", mono="dejavumono", coverage=coverage, unicode=True)
        _coverages[paths] = found
    return found
