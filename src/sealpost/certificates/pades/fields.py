"""The signers' signature fields, prepared before the first signature, and their locks.

:func:`prepare_document` adds one empty signature field per signer (ISO 32000-1 §12.7.4.5),
each with its widget on its page, an empty appearance and a field lock (``/Lock``, Table 233)
naming the field itself, all in one incremental update before any signature.

Why all fields first: pyHanko's difference analysis (what it accepts after a signature, the
rules of ISO 32000-1 §12.8.2.2 made precise) accepts a later revision that *fills* an existing
empty signature field (``FORM_FILLING``) but reports any other change of a field dictionary
after a signature as suspicious (``OTHER``).  A field's lock lives in that dictionary, so it
is declared when the field is made (:attr:`FieldSpec.lock`), before any signature; at signing,
pyHanko copies it into the signature as a ``/FieldMDP`` transform (§12.8.2.4), covered by the
signature.  It names the signed field only (:func:`own_lock`): pyHanko enforces such locks (a
later revision that fills a locked field is ``OTHER`` for the locking signature), so a lock
naming the other signers' fields would break this signature when they sign.  Readers such as
Acrobat also show a locked field as read-only.  A signer without a field in the document gets
an invisible one, created and locked in the revision of its signature (pyHanko accepts new
signature fields after a signature).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.rw_common import find_inherited_value_in_tree
from pyhanko.sign import fields as pdf_fields

from sealpost.certificates.pades.errors import SignatureError
from sealpost.certificates.pades.pdf import (
    field_names,
    open_writer,
    page_count,
    sorted_box,
    write,
)
from sealpost.errors import InvalidInput

__all__ = [
    "FIELD_NAME",
    "FieldSpec",
    "check_lock",
    "find_signature_field",
    "own_lock",
    "prepare_document",
    "widget_size",
]

FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A signature field's partial name (``/T``): a ``.`` would make a hierarchy of fields
(ISO 32000-1 §12.7.3.2)."""

_EDGE_TOLERANCE = 0.01  # points: boxes computed from floats may touch the page edge


@dataclass(frozen=True)
class FieldSpec:
    """One signer's signature field, made by :func:`prepare_document`."""

    name: str
    """Field name (``/T``), e.g. ``Signer1``: letters, digits, ``_`` and ``-`` (a ``.``
    would make a hierarchy of fields)."""
    page: int
    """1-based page number."""
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in PDF points, origin bottom-left of the page's media box."""
    lock: bool = True
    """Declare a field lock naming this field: its signature will carry a ``/FieldMDP``
    transform locking it (see the module docstring for why this is decided here)."""


def prepare_document(pdf: bytes, fields: Sequence[FieldSpec]) -> bytes:
    """Add the empty signature fields (one per signer) in one incremental update, before any
    signature, so that later revisions only *fill* fields, which pyHanko's difference
    analysis accepts.  Refuses (InvalidInput) a page out of range, a box outside the page or
    of zero size, a bad or duplicate field name, or a name already in the PDF."""
    writer = open_writer(pdf)
    existing = set(field_names(writer))
    pages = page_count(writer)
    seen: set[str] = set()
    for spec in fields:
        _check_field_spec(writer, spec, pages, existing, seen)
        seen.add(spec.name)
    for spec in fields:
        try:
            pdf_fields.append_signature_field(
                writer,
                pdf_fields.SigFieldSpec(
                    sig_field_name=spec.name,
                    on_page=spec.page - 1,
                    box=spec.box,  # type: ignore[arg-type]  # pyHanko accepts floats
                    field_mdp_spec=own_lock(spec.name) if spec.lock else None,
                ),
            )
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"cannot add signature field {spec.name!r}: {exc}") from exc
    return write(writer)


def own_lock(name: str) -> pdf_fields.FieldMDPSpec:
    """The lock a signer's field declares: itself, and nothing else, so that the other
    signers' fields stay free to fill (pyHanko reports filling a locked field as ``OTHER``)."""
    return pdf_fields.FieldMDPSpec(pdf_fields.FieldMDPAction.INCLUDE, [name])


def check_lock(sig_field: generic.DictionaryObject, name: str, lock: bool) -> None:
    """Refuse (SignatureError) a signature whose wish to lock its field differs from the lock
    the field was prepared with: that lock cannot change after the first signature."""
    try:
        declared = pdf_fields.FieldMDPSpec.from_pdf_object(sig_field["/Lock"])
    except KeyError:
        declared = None
    except (PdfError, ValueError) as exc:
        raise SignatureError(f"the lock of signature field {name!r} is unreadable: {exc}") from exc
    if lock and (declared is None or not declared.is_locked(name)):
        raise SignatureError(
            f"signature field {name!r} was prepared without a lock on itself, and a lock "
            "cannot be added after the first signature without breaking it"
        )
    if not lock and declared is not None:
        raise SignatureError(
            f"signature field {name!r} was prepared with a lock, which its signature applies"
        )


def find_signature_field(
    writer: IncrementalPdfFileWriter, name: str
) -> generic.DictionaryObject | None:
    """The signature field named ``name``, or None."""
    for found, _value, ref in pdf_fields.enumerate_sig_fields(writer, with_name=name):
        if found == name:
            sig_field = ref.get_object()
            assert isinstance(sig_field, generic.DictionaryObject)
            return sig_field
    return None


def widget_size(sig_field: generic.DictionaryObject) -> tuple[float, float]:
    """Width and height of the field's (first) widget; (0, 0) for an invisible field."""
    widget = sig_field
    if "/Rect" not in widget and "/Kids" in widget:
        widget = widget["/Kids"][0].get_object()
    try:
        x1, y1, x2, y2 = (float(v) for v in widget["/Rect"])
    except (KeyError, TypeError, ValueError):
        return 0.0, 0.0
    return abs(x2 - x1), abs(y2 - y1)


def _check_field_spec(
    writer: IncrementalPdfFileWriter,
    spec: FieldSpec,
    pages: int,
    existing: set[str],
    seen: set[str],
) -> None:
    if not FIELD_NAME.fullmatch(spec.name):
        raise InvalidInput(f"field name {spec.name!r} must be 1-64 letters, digits, '_' or '-'")
    if spec.name in seen:
        raise InvalidInput(f"field name {spec.name!r} is given twice")
    if spec.name in existing:
        raise InvalidInput(f"field name {spec.name!r} is already used by a field of the PDF")
    if not 1 <= spec.page <= pages:
        raise InvalidInput(
            f"field {spec.name!r}: page {spec.page} is out of range (the PDF has {pages} pages)"
        )
    x1, y1, x2, y2 = spec.box
    if not all(math.isfinite(v) for v in spec.box):
        raise InvalidInput(f"field {spec.name!r}: the box {spec.box} is not finite")
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        raise InvalidInput(
            f"field {spec.name!r}: the box {spec.box} has zero or negative size "
            "(x1 < x2 and y1 < y2 are required)"
        )
    try:
        page_ref, _ = writer.find_page_for_modification(spec.page - 1)  # type: ignore[no-untyped-call]
        page = page_ref.get_object()
        media = find_inherited_value_in_tree(page, "/MediaBox", "/Parent")  # type: ignore[no-untyped-call]
        left, bottom, right, top = sorted_box(media)
    except (PdfError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise InvalidInput(f"page {spec.page} has no readable media box: {exc}") from None
    tol = _EDGE_TOLERANCE
    if x1 < left - tol or y1 < bottom - tol or x2 > right + tol or y2 > top + tol:
        raise InvalidInput(
            f"field {spec.name!r}: the box {spec.box} is outside page {spec.page} "
            f"({left:g}, {bottom:g}, {right:g}, {top:g})"
        )
