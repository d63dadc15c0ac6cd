"""Applying PAdES signatures and document timestamps (ETSI EN 319 142-1), with pyHanko.

A signed document is a chain of incremental updates (ISO 32000-1 §7.5.6) after the upload,
each covering all the ones before it:

1. :func:`~sealpost.certificates.pades.fields.prepare_document`: the empty, locked signature
   fields, before any signature;
2. :func:`sign_for_signer`, once per signer: the field is filled with a
   ``/ETSI.CAdES.detached`` signature (ISO 32000-2 §12.8.3.4, PAdES baseline) by the
   service's seal certificate *on behalf of* the signer (the signer's name in ``/Name``, the
   reason, the visible appearance of :mod:`~sealpost.certificates.pades.appearance`), an RFC
   3161 signature timestamp (PAdES B-T) and, in the same revision, the validation data in the
   DSS (ISO 32000-2 §12.8.4.3; B-LT);
3. :func:`finalize_document`: the DSS with validation data for every signature, and a
   document timestamp (``/ETSI.RFC3161``) over everything (B-LTA).

The signer's evidence is bound as a signed attribute
(:mod:`~sealpost.certificates.pades.evidence`), next to a CAdES commitment-type-indication
``proofOfApproval`` (ETSI EN 319 122-1) that says what the signer committed to.  Paths are
validated before signing, offline against the given roots, as in
:mod:`sealpost.certificates.seal`; what pyHanko raises becomes a Sealpost error in
:func:`~sealpost.certificates.pades.errors.pyhanko_errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509
from fpdf import FPDFException
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign import signers
from pyhanko.sign.ades.api import GenericCommitment
from pyhanko.sign.signers.pdf_signer import (
    DSSContentSettings,
    SigDSSPlacementPreference,
    TimestampDSSContentSettings,
)
from pyhanko.sign.validation import EmbeddedPdfSignature
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.stamp import StaticStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.path import ValidationPath

from sealpost.certificates.pades.appearance import SignerAppearance, render_appearance, stamp_style
from sealpost.certificates.pades.errors import SignatureError, pyhanko_errors
from sealpost.certificates.pades.evidence import EvidenceAttrSpec, evidence_digest
from sealpost.certificates.pades.fields import (
    FIELD_NAME,
    check_lock,
    find_signature_field,
    own_lock,
    widget_size,
)
from sealpost.certificates.pades.pdf import (
    embedded_signatures,
    field_names,
    open_reader,
    open_writer,
)
from sealpost.certificates.seal import IdentitySigner, validation_context
from sealpost.certificates.timestamper import LedgerTimeStamper
from sealpost.errors import Conflict, InvalidInput
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity

__all__ = ["ARCHIVE_TIMESTAMP_FIELD", "finalize_document", "sign_for_signer"]

ARCHIVE_TIMESTAMP_FIELD = "SealpostDocumentTimestamp"
"""The document timestamp's field; a later renewal gets a numbered one."""


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
    signed attribute :data:`~sealpost.certificates.pades.evidence.EVIDENCE_ATTRIBUTE_OID` (the
    SHA-256 of its canonical JSON; read it back with
    :func:`~sealpost.certificates.pades.evidence.bound_evidence_sha256`).

    ``lock=True`` requires the signature to lock its own field (``/FieldMDP``): the field must
    have been prepared with :attr:`~sealpost.certificates.pades.fields.FieldSpec.lock`, or be
    created now.  A mismatch is a :class:`~sealpost.certificates.pades.errors.SignatureError`,
    since the field's lock cannot change after the first signature.

    Raises :class:`~sealpost.certificates.pades.errors.SignatureUnavailable` when the TSA is
    unreachable (retry later), :class:`~sealpost.errors.Conflict` when the field is signed
    already, InvalidInput for an unreadable PDF or appearance, and ``SignatureError``
    otherwise; returns nothing then.
    """
    if appearance.signed_at.tzinfo is None:
        raise InvalidInput("the signing time must be timezone-aware")
    digest = evidence_digest(evidence)
    writer = open_writer(pdf)
    sig_field = find_signature_field(writer, field)
    new_field_spec: pdf_fields.SigFieldSpec | None = None
    style: StaticStampStyle | None = None
    if sig_field is None:
        if not FIELD_NAME.fullmatch(field) or field in set(field_names(writer)):
            raise InvalidInput(f"{field!r} cannot be a new signature field")
        new_field_spec = pdf_fields.SigFieldSpec(
            sig_field_name=field,
            field_mdp_spec=own_lock(field) if lock else None,
        )
    else:
        if "/V" in sig_field:
            raise Conflict(f"signature field {field!r} is signed already")
        check_lock(sig_field, field, lock)
        width, height = widget_size(sig_field)
        if width > 0 and height > 0:
            try:
                style = stamp_style(render_appearance(appearance, width, height))
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
        cades_signed_attr_spec=EvidenceAttrSpec(
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
    with pyhanko_errors("the signature was not applied"):
        out = pdf_signer.sign_pdf(writer, existing_fields_only=False)
    result: bytes = out.getvalue()
    return result


def finalize_document(
    pdf: bytes, *, timestamper: TimeStamper, trust_roots: Sequence[x509.Certificate]
) -> bytes:
    """On completion: one incremental update with the DSS completed for every signature (and
    timestamp) of the file, then a document timestamp (``/ETSI.RFC3161``) over everything:
    PAdES B-LTA.  Renewing it later (before the TSA certificate expires) extends it."""
    reader = open_reader(pdf)
    context = validation_context(trust_roots)
    sigs = embedded_signatures(reader)
    taken = set(field_names(reader))
    name = ARCHIVE_TIMESTAMP_FIELD
    number = 1
    while name in taken:
        number += 1
        name = f"{ARCHIVE_TIMESTAMP_FIELD}{number}"
    writer = open_writer(pdf)
    stamper = signers.PdfTimeStamper(LedgerTimeStamper(timestamper), field_name=name)
    with pyhanko_errors("the document timestamp was not applied"):
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


async def _validation_paths(
    sigs: Iterable[EmbeddedPdfSignature], context: ValidationContext
) -> list[ValidationPath]:
    paths: list[ValidationPath] = []
    for sig in sigs:
        paths += await collect_validation_info(sig, context)
    return paths
