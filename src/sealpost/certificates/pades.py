"""PAdES signatures of a signature process's signers (ETSI EN 319 142-1), with pyHanko.

A signed document is a chain of incremental updates (ISO 32000-1 §7.5.6) after the upload:

1. :func:`prepare_document`: one empty signature field per signer, each with its widget on
   its page, an empty appearance and a field lock (``/Lock``, ISO 32000-1 §12.7.4.5, Table 233)
   naming the field itself;
2. :func:`sign_for_signer`, once per signer: the field is filled with a
   ``/ETSI.CAdES.detached`` signature by the service's seal certificate *on behalf of* the
   signer (the signer's name in ``/Name``, the reason, the visible appearance), an RFC 3161
   signature timestamp (PAdES B-T) and, in the same revision, the validation data in the DSS
   (B-LT);
3. :func:`finalize_document`: the DSS with validation data for every signature, and a
   document timestamp (``/ETSI.RFC3161``) over everything (B-LTA).

Why all fields first: pyHanko's difference analysis (what it accepts after a signature, the
rules of ISO 32000-1 §12.8.2.2 made precise) accepts a later revision that *fills* an existing
empty signature field (``FORM_FILLING``) but reports any other change of a field dictionary
after a signature as suspicious (``OTHER``).  A field's lock lives in that dictionary, so it
is declared when the field is made (:attr:`FieldSpec.lock`), before any signature; at signing,
pyHanko copies it into the signature as a ``/FieldMDP`` transform (§12.8.2.4), covered by the
signature.  It names the signed field only: pyHanko enforces such locks (a later revision that
fills a locked field is ``OTHER`` for the locking signature), so a lock naming the other
signers' fields would break this signature when they sign.  Readers such as Acrobat also show
a locked field as read-only.  A signer without a field in the document gets an invisible one,
created and locked in the revision of its signature (pyHanko accepts new signature fields
after a signature).

The signer's evidence (identification channel, IP, user agent, digests of the consent and of
the document) is bound as a custom CMS signed attribute, :data:`EVIDENCE_ATTRIBUTE_OID`, which
pyHanko lets us add through ``PdfSignatureMetadata.cades_signed_attr_spec``: its
``prepare_providers`` is where CAdES attributes are supplied.  The value is a DER
``MessageImprint`` (RFC 3161 §2.4.1: SHA-256 and a digest) of the RFC 8785 canonical JSON of
the evidence, see :func:`evidence_digest`.  The digest, not the values: the signed PDF goes to
every signer and copy recipient, and one signer's IP address, user agent and email must not be
disclosed to the others.  The values stay in the ledger record, whose evidence hashes to the
bound digest.  A CAdES commitment-type-indication ``proofOfApproval`` (ETSI EN 319 122-1)
says what the signer committed to.

Validation (before signing, for the DSS, and in :func:`check_signatures`) is offline against
the given roots, as in :mod:`sealpost.certificates.seal` (no fetching, soft-fail revocation).

Errors::

    SealpostError
    ├── InvalidInput (422)              a PDF that cannot be parsed, a bad field or appearance
    ├── Conflict (409)                  the field is signed already
    └── SignatureError (500)            the signature was not applied; nothing was produced
        └── SignatureUnavailable (503)  the TSA is unreachable: retry later
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms, core, tsp
from cryptography import x509
from fpdf import FPDF, FPDFException
from PIL import Image, UnidentifiedImageError
from pyhanko.pdf_utils import content, generic, layout
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.rw_common import find_inherited_value_in_tree
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign import signers
from pyhanko.sign.ades.api import CAdESSignedAttrSpec, GenericCommitment
from pyhanko.sign.attributes import CMSAttributeProvider
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import (
    DSSContentSettings,
    SigDSSPlacementPreference,
    TimestampDSSContentSettings,
)
from pyhanko.sign.timestamps import TimestampRequestError
from pyhanko.sign.validation import (
    EmbeddedPdfSignature,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.stamp import StaticStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
from pyhanko_certvalidator.path import ValidationPath

from sealpost.certificates import _asn1_fix
from sealpost.certificates.fonts import FontSet, close_fonts, fonts_for_text
from sealpost.certificates.seal import IdentitySigner, validation_context
from sealpost.certificates.timestamper import LedgerTimeStamper
from sealpost.errors import Conflict, InvalidInput, SealpostError, ServiceUnavailable
from sealpost.ledger.canonical import CanonicalizationError, canonical_json
from sealpost.ledger.timestamps import TimeStamper, TimestampError, TimestampUnavailable
from sealpost.pki.keys import SigningIdentity

__all__ = [
    "ARCHIVE_TIMESTAMP_FIELD",
    "EVIDENCE_ATTRIBUTE_OID",
    "FieldSpec",
    "SignatureCheck",
    "SignatureError",
    "SignatureUnavailable",
    "SignerAppearance",
    "bound_evidence_sha256",
    "check_signatures",
    "evidence_digest",
    "finalize_document",
    "prepare_document",
    "render_appearance",
    "sign_for_signer",
]

EVIDENCE_ATTRIBUTE_OID = "2.25.327423329561048904955389350377697788829"
"""Sealpost's signed attribute ``id-sealpost-signerEvidence``, value ``MessageImprint``.  A
UUID-derived OID (ITU-T X.667 §8): unique without registration, as a private one must be."""

ARCHIVE_TIMESTAMP_FIELD = "SealpostDocumentTimestamp"
"""The document timestamp's field; a later renewal gets a numbered one."""

_FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_IMAGE_PIXELS = 4_000 * 4_000
_BAD_IMAGE = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
)
_EDGE_TOLERANCE = 0.01  # points: boxes computed from floats may touch the page edge
_SCRIPT_FONTS = (  # a script-like italic for typed signatures, where the system has one
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSerif-Italic.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSerif-Italic.ttf"),
)

_asn1_fix.apply()  # before any CMS is built or parsed; see _asn1_fix


class SignatureError(SealpostError):
    """The signature (or document timestamp) was not applied; no PDF was produced."""

    code = "signature_failed"
    title = "The PDF signature could not be applied"

    retryable: bool = False


class SignatureUnavailable(SignatureError, ServiceUnavailable):
    """The timestamp authority is unreachable: a signature is never produced without its
    timestamp, so the caller retries the whole signature later."""

    status = 503
    retryable = True


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
    """The evidence digest bound in the signature (hex), see :func:`evidence_digest`."""
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


def evidence_digest(evidence: Mapping[str, str]) -> bytes:
    """SHA-256 of the RFC 8785 canonical JSON of ``evidence``: what a signature binds."""
    try:
        return hashlib.sha256(canonical_json(dict(evidence))).digest()
    except CanonicalizationError as exc:
        raise InvalidInput(f"the signature evidence is not canonical JSON: {exc}") from None


def prepare_document(pdf: bytes, fields: Sequence[FieldSpec]) -> bytes:
    """Add the empty signature fields (one per signer) in one incremental update, before any
    signature, so that later revisions only *fill* fields, which pyHanko's difference
    analysis accepts.  Refuses (InvalidInput) a page out of range, a box outside the page or
    of zero size, a bad or duplicate field name, or a name already in the PDF."""
    writer = _open_writer(pdf)
    existing = set(_field_names(writer))
    pages = _page_count(writer)
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
                    field_mdp_spec=_own_lock(spec.name) if spec.lock else None,
                ),
            )
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"cannot add signature field {spec.name!r}: {exc}") from exc
    return _write(writer)


def sign_for_signer(
    pdf: bytes,
    *,
    field: str,
    appearance: SignerAppearance,
    reason: str,
    evidence: Mapping[str, str],
    seal: SigningIdentity,
    timestamper: TimeStamper,
    trust_roots: Sequence[x509.Certificate],
    lock: bool = True,
) -> bytes:
    """One signer's PAdES B-LT signature in its own incremental update.

    A ``/ETSI.CAdES.detached`` signature by ``seal`` on behalf of the signer (``/Name`` and
    the appearance show the signer's name; ``/Reason`` is ``reason``), with an RFC 3161
    signature timestamp and the seal's and TSA's chains in the DSS of the same revision.  The
    appearance (drawn image or typed text, name, time, identification) fills the field's box;
    a field the document lacks is created invisible.  ``evidence`` is bound as the custom
    signed attribute :data:`EVIDENCE_ATTRIBUTE_OID` (the SHA-256 of its canonical JSON, see
    the module docstring; read it back with :func:`bound_evidence_sha256`).

    ``lock=True`` requires the signature to lock its own field (``/FieldMDP``): the field must
    have been prepared with :attr:`FieldSpec.lock`, or be created now.  A mismatch is a
    :class:`SignatureError`, since the field's lock cannot change after the first signature.

    Raises :class:`SignatureUnavailable` when the TSA is unreachable (retry later),
    :class:`~sealpost.errors.Conflict` when the field is signed already, InvalidInput for an
    unreadable PDF or appearance, and :class:`SignatureError` otherwise; returns nothing then.
    """
    if appearance.signed_at.tzinfo is None:
        raise InvalidInput("the signing time must be timezone-aware")
    digest = evidence_digest(evidence)
    writer = _open_writer(pdf)
    sig_field = _find_signature_field(writer, field)
    new_field_spec: pdf_fields.SigFieldSpec | None = None
    style: StaticStampStyle | None = None
    if sig_field is None:
        if not _FIELD_NAME.fullmatch(field) or field in set(_field_names(writer)):
            raise InvalidInput(f"{field!r} cannot be a new signature field")
        new_field_spec = pdf_fields.SigFieldSpec(
            sig_field_name=field,
            field_mdp_spec=_own_lock(field) if lock else None,
        )
    else:
        if "/V" in sig_field:
            raise Conflict(f"signature field {field!r} is signed already")
        _check_lock(sig_field, field, lock)
        width, height = _widget_size(sig_field)
        if width > 0 and height > 0:
            try:
                style = _stamp_style(render_appearance(appearance, width, height))
            except FPDFException as exc:
                raise SignatureError(f"the signature appearance cannot be drawn: {exc}") from exc
    meta = signers.PdfSignatureMetadata(
        field_name=field,
        md_algorithm="sha256",
        reason=reason,
        name=appearance.name,
        subfilter=pdf_fields.SigSeedSubFilter.PADES,
        embed_validation_info=True,
        use_pades_lta=False,
        validation_context=validation_context(trust_roots, seal.chain),
        # VRI is optional in PAdES and cannot be written before the signature exists.
        dss_settings=DSSContentSettings(
            placement=SigDSSPlacementPreference.TOGETHER_WITH_SIGNATURE, include_vri=False
        ),
        cades_signed_attr_spec=_EvidenceAttrSpec(
            commitment_type=GenericCommitment.PROOF_OF_APPROVAL.asn1,
            evidence_sha256=digest,
        ),
    )
    pdf_signer = signers.PdfSigner(
        meta,
        signer=IdentitySigner(seal),
        timestamper=LedgerTimeStamper(timestamper),
        stamp_style=style,
        new_field_spec=new_field_spec,
    )
    with _signature_errors("the signature was not applied"):
        out = pdf_signer.sign_pdf(writer, existing_fields_only=False)
    result: bytes = out.getvalue()
    return result


def finalize_document(
    pdf: bytes, *, timestamper: TimeStamper, trust_roots: Sequence[x509.Certificate]
) -> bytes:
    """On completion: one incremental update with the DSS completed for every signature (and
    timestamp) of the file, then a document timestamp (``/ETSI.RFC3161``) over everything:
    PAdES B-LTA.  Renewing it later (before the TSA certificate expires) extends it."""
    reader = _open_reader(pdf)
    context = validation_context(trust_roots)
    sigs = _embedded_signatures(reader)
    taken = set(_field_names(reader))
    name = ARCHIVE_TIMESTAMP_FIELD
    number = 1
    while name in taken:
        number += 1
        name = f"{ARCHIVE_TIMESTAMP_FIELD}{number}"
    writer = _open_writer(pdf)
    stamper = signers.PdfTimeStamper(LedgerTimeStamper(timestamper), field_name=name)
    with _signature_errors("the document timestamp was not applied"):
        paths = asyncio.run(_validation_paths(sigs, context))
        DocumentSecurityStore.supply_dss_in_writer(
            writer, None, paths=paths, validation_context=context
        )
        out = stamper.timestamp_pdf(
            writer,
            "sha256",
            validation_context=context,
            dss_settings=TimestampDSSContentSettings(include_vri=False, update_before_ts=True),
        )
    result: bytes = out.getvalue()
    return result


def check_signatures(pdf: bytes, trust_roots: Sequence[x509.Certificate]) -> list[SignatureCheck]:
    """Every signature and document timestamp of ``pdf``, in file order, validated offline
    with pyHanko against ``trust_roots`` (ETSI EN 319 102-1 basic validation plus pyHanko's
    difference analysis of the revisions after each).

    As in :mod:`sealpost.certificates.verify`, the last document timestamp is checked now and
    each earlier signature as of the time of the valid document timestamp after it, which
    proves it existed then: a signature stays valid after its certificate expires.  A
    signature that cannot be validated at all is reported, with the reason, not raised.
    """
    sigs = _embedded_signatures(_open_reader(pdf))
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


def bound_evidence_sha256(sig: EmbeddedPdfSignature) -> str | None:
    """The evidence digest (hex) bound in ``sig``'s signed attributes, if any."""
    attrs = sig.signer_info["signed_attrs"]
    for attr in attrs if attrs else ():
        if attr["type"].dotted == EVIDENCE_ATTRIBUTE_OID:
            imprint = tsp.MessageImprint.load(attr["values"][0].dump())
            digest: bytes = imprint["hashed_message"].native
            return digest.hex()
    return None


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


# --- signing internals -------------------------------------------------------------------


@dataclass(frozen=True)
class _EvidenceAttrSpec(CAdESSignedAttrSpec):
    """pyHanko's CAdES signed attributes plus Sealpost's evidence digest."""

    evidence_sha256: bytes = b""

    def prepare_providers(
        self, message_digest: bytes, md_algorithm: str, timestamper: Any = None
    ) -> Iterator[CMSAttributeProvider]:
        yield from super().prepare_providers(message_digest, md_algorithm, timestamper)
        yield _EvidenceProvider(self.evidence_sha256)


class _EvidenceProvider(CMSAttributeProvider):
    attribute_type = EVIDENCE_ATTRIBUTE_OID

    def __init__(self, digest: bytes) -> None:
        self.digest = digest

    async def get_attribute(self, dry_run: bool = False) -> cms.CMSAttribute:
        # asn1crypto does not know the OID, so the value goes in as an already-encoded Any.
        imprint = tsp.MessageImprint(
            {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": self.digest}
        )
        return cms.CMSAttribute(
            {"type": self.attribute_type, "values": [core.Any.load(imprint.dump())]}
        )


async def _validation_paths(
    sigs: Iterable[EmbeddedPdfSignature], context: ValidationContext
) -> list[ValidationPath]:
    paths: list[ValidationPath] = []
    for sig in sigs:
        paths += await collect_validation_info(sig, context)
    return paths


@contextlib.contextmanager
def _signature_errors(what: str) -> Iterator[None]:
    """Map what pyHanko and the TSA raise to Sealpost's errors, as certificates.seal does."""
    try:
        yield
    except TimestampUnavailable as exc:
        raise SignatureUnavailable(
            f"the timestamp authority is unreachable: {what}; it will be retried ({exc.message})"
        ) from exc
    except TimestampError as exc:
        raise SignatureError(f"{what}: the timestamp failed: {exc.message}") from exc
    except TimestampRequestError as exc:
        raise SignatureError(f"{what}: the TSA refused: {exc}") from exc
    except (PathBuildingError, PathValidationError, AssertionError) as exc:
        # pyhanko-certvalidator 0.33 asserts (rather than skips) when a root with the same
        # name but another key type is tried as the issuer: a path that does not validate.
        raise SignatureError(
            f"{what}: the seal or TSA certificate does not validate against the configured "
            f"roots ({exc})"
        ) from exc
    except SigningError as exc:
        cause = exc.__cause__
        if isinstance(cause, PathBuildingError | PathValidationError):  # checked before signing
            raise SignatureError(
                f"{what}: the seal certificate does not validate against the configured roots "
                f"({cause})"
            ) from exc
        raise SignatureError(f"{what}: {exc}") from exc
    except (PdfError, layout.LayoutError) as exc:
        raise SignatureError(f"{what}: {exc}") from exc


def _own_lock(name: str) -> pdf_fields.FieldMDPSpec:
    """The lock a signer's field declares: itself, and nothing else, so that the other
    signers' fields stay free to fill (pyHanko reports filling a locked field as ``OTHER``)."""
    return pdf_fields.FieldMDPSpec(pdf_fields.FieldMDPAction.INCLUDE, [name])


def _check_lock(sig_field: generic.DictionaryObject, name: str, lock: bool) -> None:
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


def _stamp_style(appearance_pdf: bytes) -> StaticStampStyle:
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


# --- appearance internals ----------------------------------------------------------------


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


# --- PDF helpers -------------------------------------------------------------------------


def _open_reader(pdf: bytes) -> PdfFileReader:
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        reader.root  # noqa: B018 - forces the catalog to parse
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from None
    if reader.encrypted:
        raise InvalidInput("the PDF is encrypted: encrypted PDFs cannot be signed here")
    return reader


def _embedded_signatures(reader: PdfFileReader) -> list[EmbeddedPdfSignature]:
    try:
        return list(reader.embedded_signatures)
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(
            f"the PDF's signatures cannot be read: {type(exc).__name__}: {exc}"
        ) from None


def _open_writer(pdf: bytes) -> IncrementalPdfFileWriter:
    _open_reader(pdf)
    try:
        return IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # a damaged or hostile PDF raises many types
        raise InvalidInput(f"the PDF cannot be read: {type(exc).__name__}: {exc}") from None


def _write(writer: IncrementalPdfFileWriter) -> bytes:
    out = io.BytesIO()
    try:
        writer.write(out)  # type: ignore[no-untyped-call]
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"the PDF cannot be updated: {exc}") from exc
    return out.getvalue()


def _page_count(handler: Any) -> int:
    try:
        return int(handler.root["/Pages"]["/Count"])
    except (KeyError, TypeError, ValueError, PdfError) as exc:
        raise InvalidInput(f"the PDF has no readable page tree: {exc}") from None


def _field_names(handler: Any) -> Iterator[str]:
    """Fully qualified names of every form field (any type), ISO 32000-1 §12.7.3.2."""
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


def _find_signature_field(
    writer: IncrementalPdfFileWriter, name: str
) -> generic.DictionaryObject | None:
    for found, _value, ref in pdf_fields.enumerate_sig_fields(writer, with_name=name):
        if found == name:
            sig_field = ref.get_object()
            assert isinstance(sig_field, generic.DictionaryObject)
            return sig_field
    return None


def _widget_size(sig_field: generic.DictionaryObject) -> tuple[float, float]:
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
    if not _FIELD_NAME.fullmatch(spec.name):
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
        left, bottom, right, top = _sorted_box(media)
    except (PdfError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise InvalidInput(f"page {spec.page} has no readable media box: {exc}") from None
    tol = _EDGE_TOLERANCE
    if x1 < left - tol or y1 < bottom - tol or x2 > right + tol or y2 > top + tol:
        raise InvalidInput(
            f"field {spec.name!r}: the box {spec.box} is outside page {spec.page} "
            f"({left:g}, {bottom:g}, {right:g}, {top:g})"
        )


def _sorted_box(box: Any) -> tuple[float, float, float, float]:
    """A PDF rectangle as (left, bottom, right, top): ISO 32000-1 §7.9.5 allows any corners."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


# --- validation internals ----------------------------------------------------------------


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
