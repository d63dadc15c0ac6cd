"""Validating every signature and document timestamp of a signed PDF, offline, with pyHanko.

:func:`check_signatures` is what the signing flow and the tests use to know a document is
sound: for each signature, ETSI EN 319 102-1 basic validation (integrity, signature value,
certificate path to the given roots, signature timestamp) plus pyHanko's difference analysis
of the revisions after it (the modification rules of ISO 32000-1 §12.8.2.2, DocMDP and
FieldMDP, made precise).  Validation is offline against the given roots, as in
:mod:`sealpost.certificates.seal` (no fetching, soft-fail revocation).

Long-term validity (PAdES B-LTA, ETSI EN 319 142-1): the last document timestamp is checked
now and each earlier signature as of the time of the valid document timestamp after it,
which proves it existed then, so a signature stays valid after its certificate expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import (
    EmbeddedPdfSignature,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext

from sealpost.certificates.pades.evidence import bound_evidence_sha256
from sealpost.certificates.pades.pdf import embedded_signatures, open_reader
from sealpost.certificates.seal import validation_context

__all__ = ["SignatureCheck", "check_signatures"]


@dataclass(frozen=True)
class SignatureCheck:
    """One signature or document timestamp of a PDF, as pyHanko validated it."""

    field: str
    signer_name: str | None
    """``/Name`` of the signature dictionary; None for a document timestamp."""
    signed_at: datetime | None
    """The time of the signature's timestamp (of the document timestamp itself)."""
    intact: bool
    """The digest matches the bytes the signature covers."""
    valid: bool
    """The signature value verifies and the signing certificate chains to the roots."""
    timestamp_valid: bool
    """The timestamp is intact, valid and its TSA chains to the roots."""
    covers_revision: int
    """0-based index of the revision the signature covers (0: the original file)."""
    modification_level: str
    """pyHanko's ``ModificationLevel`` name for what later revisions changed: ``NONE``,
    ``LTA_UPDATES`` (validation data, timestamps), ``FORM_FILLING`` (other signatures),
    ``ANNOTATIONS`` or ``OTHER``."""
    docmdp_ok: bool
    """pyHanko's verdict: the later changes are allowed for this signature."""
    is_document_timestamp: bool
    evidence_sha256: str | None = None
    """The evidence digest bound in the signature (hex), see
    :func:`~sealpost.certificates.pades.evidence.evidence_digest`."""
    problem: str | None = None
    """Why the signature could not be validated at all (a damaged or hostile file)."""

    @property
    def ok(self) -> bool:
        """Intact, valid, timestamped, and nothing but form filling or validation data after."""
        return (
            self.intact
            and self.valid
            and self.timestamp_valid
            and self.docmdp_ok
            and ModificationLevel[self.modification_level] <= ModificationLevel.FORM_FILLING
        )


def check_signatures(pdf: bytes, trust_roots: Sequence[x509.Certificate]) -> list[SignatureCheck]:
    """Every signature and document timestamp of ``pdf``, in file order, validated offline
    with pyHanko against ``trust_roots`` (ETSI EN 319 102-1 basic validation plus pyHanko's
    difference analysis of the revisions after each).

    As in :mod:`sealpost.certificates.verify`, the last document timestamp is checked now and
    each earlier signature as of the time of the valid document timestamp after it, which
    proves it existed then: a signature stays valid after its certificate expires.  A
    signature that cannot be validated at all is reported, with the reason, not raised.
    """
    sigs = embedded_signatures(open_reader(pdf))
    checks: list[SignatureCheck] = []
    moment: datetime | None = None
    for sig in reversed(sigs):
        context = validation_context(trust_roots, moment=moment)
        try:
            check = _check(sig, context)
        except Exception as exc:  # a damaged or hostile file: report it, never crash
            check = _unreadable(sig, f"{type(exc).__name__}: {exc}")
        if check.is_document_timestamp and check.timestamp_valid and check.intact:
            moment = check.signed_at
        checks.insert(0, check)
    return checks


def _check(sig: EmbeddedPdfSignature, context: ValidationContext) -> SignatureCheck:
    if sig.sig_object_type == "/DocTimeStamp":
        stamp = validate_pdf_timestamp(sig, validation_context=context)
        ok = bool(stamp.intact and stamp.valid and stamp.trusted)
        return SignatureCheck(
            field=str(sig.field_name),
            signer_name=None,
            signed_at=stamp.timestamp,
            intact=bool(stamp.intact),
            valid=ok,
            timestamp_valid=ok,
            covers_revision=sig.signed_revision,
            modification_level=_level(stamp.modification_level),
            docmdp_ok=_docmdp_ok(stamp.docmdp_ok, stamp.modification_level),
            is_document_timestamp=True,
        )
    status = validate_pdf_signature(sig, context, context)
    ts = status.timestamp_validity
    name = sig.sig_object.get("/Name")
    return SignatureCheck(
        field=str(sig.field_name),
        signer_name=str(name) if name is not None else None,
        signed_at=ts.timestamp if ts is not None else None,
        intact=bool(status.intact),
        valid=bool(status.valid and status.trusted),
        timestamp_valid=ts is not None and bool(ts.intact and ts.valid and ts.trusted),
        covers_revision=sig.signed_revision,
        modification_level=_level(status.modification_level),
        docmdp_ok=_docmdp_ok(status.docmdp_ok, status.modification_level),
        is_document_timestamp=False,
        evidence_sha256=bound_evidence_sha256(sig),
    )


def _level(level: ModificationLevel | None) -> str:
    return level.name if level is not None else ModificationLevel.OTHER.name


def _docmdp_ok(verdict: bool | None, level: ModificationLevel | None) -> bool:
    """pyHanko's verdict; it gives none for document timestamps, for which its own rule for
    a signature without a DocMDP policy applies: anything but ``OTHER``."""
    if verdict is not None:
        return verdict
    return level is not None and level != ModificationLevel.OTHER


def _unreadable(sig: EmbeddedPdfSignature, problem: str) -> SignatureCheck:
    try:
        name, revision = str(sig.field_name), sig.signed_revision
        is_stamp = sig.sig_object_type == "/DocTimeStamp"
    except Exception:  # the signature dictionary itself is broken
        name, revision, is_stamp = "?", -1, False
    return SignatureCheck(
        field=name,
        signer_name=None,
        signed_at=None,
        intact=False,
        valid=False,
        timestamp_valid=False,
        covers_revision=revision,
        modification_level=ModificationLevel.OTHER.name,
        docmdp_ok=False,
        is_document_timestamp=is_stamp,
        problem=problem,
    )
