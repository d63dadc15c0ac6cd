"""Offline verification of a certificate PDF: its PAdES seal, then the evidence it carries.

The seal is checked with pyHanko (ETSI EN 319 102-1 basic validation of each signature plus
pyHanko's difference analysis of what was appended after it): a changed byte breaks the
digest, an incremental update that changes pages or attachments is named as a change after
sealing, and bytes after the last signed revision are named as not covered.  Then, whatever
the seal says, each attached evidence bundle is verified on its own against the same roots,
and the attached message's SHA-256 is compared with the manifest and every record.

Revocation is not checked (``revocation_mode="soft-fail"``, no fetching): the embedded
default's CA publishes no CRL or OCSP; see :mod:`sealpost.certificates.seal`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import (
    EmbeddedPdfSignature,
    SignatureCoverageLevel,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError

from sealpost.certificates.contents import (
    check_delivered,
    check_evidence,
    check_files,
    check_message,
    check_withheld,
    read_manifest,
)
from sealpost.certificates.embedded import read_embedded_files
from sealpost.certificates.errors import NotACertificate
from sealpost.certificates.report import CertificateReport
from sealpost.certificates.seal import validation_context
from sealpost.ledger.bundle import parse_bundle
from sealpost.ledger.errors import BundleFormatError
from sealpost.ledger.verify import Check
from sealpost.pki.keys import issued_by

_ALLOWED_AFTER_SEAL = (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES)


def _crypto(cert: Any) -> x509.Certificate:
    """asn1crypto certificate (pyHanko's) -> cryptography's."""
    return x509.load_der_x509_certificate(cert.dump())


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _open(data: bytes, report: CertificateReport) -> PdfFileReader | None:
    if b"%PDF-" not in data[:1024]:  # readers accept the header anywhere in the first 1 KiB
        raise NotACertificate(
            "not a PDF: the file does not start with %PDF-; give the certificate's .pdf file"
        )
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        reader.root  # noqa: B018 - forces the catalog to parse
    except Exception as exc:  # a damaged or hostile PDF: report it, never crash
        report.add(
            "pdf",
            "file",
            False,
            f"the PDF is damaged and cannot be read ({_describe(exc)}): it was altered or "
            "truncated after sealing",
        )
        return None
    return reader


def _embedded_certificates(
    reader: PdfFileReader, sigs: list[EmbeddedPdfSignature]
) -> list[x509.Certificate]:
    """Certificates from the DSS and the signatures' CMS: the chains a verifier may need."""
    certs: list[x509.Certificate] = []
    with contextlib.suppress(NoDSSFoundError):
        certs += [_crypto(c) for c in DocumentSecurityStore.read_dss(reader).load_certs()]
    for sig in sigs:
        certs += [_crypto(sig.signer_cert), *(_crypto(c) for c in sig.other_embedded_certs)]
    unique = {c.fingerprint(hashes.SHA256()): c for c in certs}
    return list(unique.values())


def _bundle_roots(files: dict[str, bytes]) -> list[x509.Certificate]:
    roots = []
    for name, raw in files.items():
        if name.startswith("evidence-") and name.endswith(".json"):
            try:
                bundle = parse_bundle(raw)
            except BundleFormatError:
                continue
            roots += [bundle.seal_chain[-1], bundle.tsa_chain[-1]]
    return roots


def _check_seal(
    report: CertificateReport, sig: EmbeddedPdfSignature, context: Any, label: str
) -> None:
    """Integrity first: trust and time are moot for a signature over other bytes."""
    status = validate_pdf_signature(sig, context, context)
    report.seal_certificate = _crypto(status.signing_cert)
    who = report.seal_certificate.subject.rfc4514_string()
    if not status.intact:
        report.add(
            "seal",
            label,
            False,
            "the document was altered: the seal's digest does not match the bytes it covers "
            "(a byte inside the sealed range was changed)",
        )
        return
    if not status.valid:
        report.add("seal", label, False, f"the seal signature of {who} does not verify")
        return
    report.add("seal", label, True, f"intact and valid, by {who}")
    report.add(
        "seal certificate",
        label,
        status.trusted,
        "chains to a trusted root" if status.trusted else f"{who} does not chain to a trusted root",
    )
    ts = status.timestamp_validity
    if ts is None:
        report.add("seal timestamp", label, False, "the seal has no signature timestamp")
    else:
        report.sealed_at = ts.timestamp
        report.timestamp_authority = _crypto(ts.signing_cert)
        ts_ok = ts.intact and ts.valid and ts.trusted
        report.add(
            "seal timestamp",
            label,
            ts_ok,
            f"RFC 3161 timestamp of {ts.timestamp.isoformat()} is valid and trusted"
            if ts_ok
            else "the seal's timestamp does not verify or is not trusted",
        )
    _check_modifications(report, label, status.modification_level, status.docmdp_ok)


def _check_modifications(
    report: CertificateReport, label: str, level: ModificationLevel | None, docmdp_ok: bool | None
) -> None:
    ok = level in _ALLOWED_AFTER_SEAL and docmdp_ok is not False
    report.add(
        "changes after sealing",
        label,
        ok,
        "none, or only validation data and timestamps"
        if ok
        else "the PDF was changed after it was sealed (pages, attachments or form content): "
        "what it shows now is not what was sealed",
    )


def _check_document_timestamp(
    report: CertificateReport, sig: EmbeddedPdfSignature, context: Any, label: str
) -> datetime | None:
    """Returns the timestamp's time when it is valid and trusted."""
    status = validate_pdf_timestamp(sig, validation_context=context)
    if not status.intact:
        report.add(
            "document timestamp",
            label,
            False,
            "the document was altered: the timestamp's digest does not match the bytes it covers",
        )
        return None
    ok = status.valid and status.trusted
    if ok and report.archived_at is None:
        report.archived_at = status.timestamp  # the latest one: signatures are walked backwards
    report.add(
        "document timestamp",
        label,
        ok,
        f"PAdES document timestamp of {status.timestamp.isoformat()} is valid and trusted"
        if ok
        else "the document timestamp does not verify or is not trusted",
    )
    _check_modifications(report, label, status.modification_level, status.docmdp_ok)
    return status.timestamp if ok else None


def _check_signatures(
    report: CertificateReport,
    reader: PdfFileReader,
    trust_roots: Sequence[x509.Certificate],
    size: int,
) -> None:
    """Validate every signature against ``trust_roots``, or the roots found in the PDF."""
    sigs = list(reader.embedded_signatures)
    if not any(s.sig_object_type == "/Sig" for s in sigs):
        report.add("seal", "file", False, "the PDF carries no seal signature")
        return
    pool = _embedded_certificates(reader, sigs)
    roots = list(trust_roots) or [
        c for c in [*pool, *_bundle_roots(report.attachments)] if _self_signed(c)
    ]
    # PAdES LTA (ETSI EN 319 102-1 long-term validation, simplified): the last document
    # timestamp is checked now; each earlier signature as of the time of the timestamp after
    # it, which proves it existed then, so the seal stays valid after its certificate expires.
    moment: datetime | None = None
    chunks: list[list[Check]] = []
    for sig in reversed(sigs):
        label = f"signature {sig.field_name}"
        context = validation_context(roots, pool, moment=moment)
        start = len(report.checks)
        try:
            if sig.sig_object_type == "/DocTimeStamp":
                moment = _check_document_timestamp(report, sig, context, label) or moment
            else:
                _check_seal(report, sig, context, label)
        except Exception as exc:  # hostile input: any failure to validate is "not valid"
            report.add(
                "seal",
                label,
                False,
                f"the document was altered or damaged: the signature cannot be validated "
                f"({_describe(exc)})",
            )
        chunks.insert(0, report.checks[start:])
        del report.checks[start:]
    report.checks.extend(check for chunk in chunks for check in chunk)
    last = max(sigs, key=lambda s: s.byte_range[2] + s.byte_range[3])
    covered = last.evaluate_signature_coverage() == SignatureCoverageLevel.ENTIRE_FILE
    end = last.byte_range[2] + last.byte_range[3]
    report.add(
        "whole file signed",
        "file",
        covered,
        "the last signature covers every byte of the file"
        if covered
        else f"{size - end} bytes at the end of the file are covered by no signature: they "
        "were appended after sealing",
    )


def verify_certificate_pdf(
    data: bytes, *, trust_roots: Sequence[x509.Certificate] = ()
) -> CertificateReport:
    """Verify a certificate PDF offline; raises :class:`NotACertificate` only for non-PDFs.

    With no ``trust_roots``, the self-signed roots embedded in the PDF (DSS, signatures,
    bundles) are trusted and the report says so: that proves integrity, not origin.
    """
    report = CertificateReport(pdf_sha256=hashlib.sha256(data).hexdigest())
    report.root_pinned = bool(trust_roots)
    reader = _open(data, report)
    if reader is None:
        return report
    try:
        report.attachments = read_embedded_files(reader)
    except Exception as exc:  # a damaged or hostile PDF: report it, never crash
        report.add(
            "attachments", "file", False, f"the attached files cannot be read: {_describe(exc)}"
        )
    try:
        _check_signatures(report, reader, trust_roots, len(data))
    except Exception as exc:  # a damaged or hostile PDF: report it, never crash
        report.add("seal", "file", False, f"the signatures cannot be read: {_describe(exc)}")
    manifest = read_manifest(report)
    if manifest is None:
        return report
    check_files(report, manifest)
    digest = check_message(report, manifest)
    check_evidence(report, manifest, digest, trust_roots)
    check_withheld(report, manifest)
    check_delivered(report, manifest)
    return report


def verify_sealed_pdf(
    data: bytes, *, trust_roots: Sequence[x509.Certificate] = ()
) -> CertificateReport:
    """Verify only the PAdES seal of any Sealpost-sealed PDF (a report that is not an evidence
    certificate: no manifest of a communication is expected); its attachments are read into
    ``attachments`` for the caller's own checks.  Raises :class:`NotACertificate` for non-PDFs."""
    report = CertificateReport(pdf_sha256=hashlib.sha256(data).hexdigest())
    report.root_pinned = bool(trust_roots)
    reader = _open(data, report)
    if reader is None:
        return report
    try:
        report.attachments = read_embedded_files(reader)
    except Exception as exc:  # a damaged or hostile PDF: report it, never crash
        report.add(
            "attachments", "file", False, f"the attached files cannot be read: {_describe(exc)}"
        )
    try:
        _check_signatures(report, reader, trust_roots, len(data))
    except Exception as exc:  # a damaged or hostile PDF: report it, never crash
        report.add("seal", "file", False, f"the signatures cannot be read: {_describe(exc)}")
    return report
