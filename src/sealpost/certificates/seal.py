"""PAdES sealing of a certificate PDF (ETSI EN 319 142-1), with pyHanko.

What is produced, as incremental updates after the rendered PDF:

1. the validation data: the seal and TSA chains in the Document Security Store (DSS), written
   in the same revision as the seal so the seal covers it (PAdES B-LT);
2. the seal: a ``/ETSI.CAdES.detached`` signature by the service's seal certificate, with a
   signature timestamp from Sealpost's TSA (PAdES B-T);
3. a document timestamp (``/ETSI.RFC3161``) over all of it (PAdES B-LTA), so the evidence
   outlives the seal certificate: renewing that timestamp before the TSA certificate expires
   extends it further.

poppler's ``pdfsig`` (22.x) validates the seal ("Signature is Valid") but does not implement
document timestamps: it lists the second signature as "Signature Type: unknown ... not yet
verified" and exits 0.  pyHanko and Adobe Reader validate both.  ``document_timestamp=False``
stops at B-LT, where pdfsig sees one signature covering the whole file.

Revocation: the local CA of the embedded default publishes neither CRL nor OCSP, so the
validation context is built with ``allow_fetching=False`` (no network at sealing) and
``revocation_mode="soft-fail"`` (a certificate without revocation pointers is accepted rather
than failing the whole seal).  pyHanko still builds and checks the path from the seal and TSA
certificates to ``trust_roots`` before signing, and embeds every certificate of both paths in
the DSS.  An operator CA that publishes CRL/OCSP would need ``allow_fetching=True`` here to
embed those too (not wired to settings yet).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import DSSContentSettings, SigDSSPlacementPreference
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from sealpost.certificates.errors import SealError, SealUnavailable
from sealpost.certificates.pades.errors import pyhanko_errors
from sealpost.certificates.timestamper import LedgerTimeStamper
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity

SEAL_FIELD = "SealpostSeal"
ARCHIVE_TIMESTAMP_FIELD = "SealpostArchiveTimestamp"


class _OfflineSealingNotice(logging.Filter):
    """Drops pyHanko's "Validation/revocation info will be embedded, but fetching is not
    allowed" warning, logged on every seal and signature.  Sealing offline is this module's
    design (see its docstring: the local CA publishes no CRL/OCSP to fetch, and sealing must not
    wait on a network), so the line only worries whoever reads the log; pyHanko offers no flag
    to say so, and allowing fetching would let it reach the network.  Every other pyHanko
    message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(
            "Validation/revocation info will be embedded, but fetching is not allowed"
        )


logging.getLogger("pyhanko.sign.signers.pdf_signer").addFilter(_OfflineSealingNotice())


def asn1_certificate(cert: x509.Certificate) -> asn1_x509.Certificate:
    """The asn1crypto form pyHanko works with."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def validation_context(
    trust_roots: Sequence[x509.Certificate],
    other_certs: Sequence[x509.Certificate] = (),
    *,
    moment: datetime | None = None,
) -> ValidationContext:
    """Offline path validation against ``trust_roots`` only (see the module docstring).

    ``moment`` validates certificates as of that time instead of now: the verifier uses a
    later timestamp's time, which proves the earlier signature existed then.
    """
    return ValidationContext(
        trust_roots=[asn1_certificate(c) for c in trust_roots],
        other_certs=[asn1_certificate(c) for c in other_certs],
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=moment,
    )


class IdentitySigner(signers.Signer):
    """pyHanko signer over the identity's key object: ECDSA, or RSA PKCS#1 v1.5.

    pyHanko's ``SimpleSigner`` wants the key as PKCS#8 bytes and re-parses them for every
    signature (for RSA-3072 that is ~0.25 s each: cryptography checks the key); signing with
    the loaded key object is instant and never exports it.
    """

    def __init__(self, identity: SigningIdentity) -> None:
        registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]
        for cert in identity.chain:
            registry.register(asn1_certificate(cert))
        super().__init__(
            signing_cert=asn1_certificate(identity.certificate), cert_registry=registry
        )
        self.identity = identity

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm).signature_algo
        digest = get_pyca_cryptography_hash(digest_algorithm)
        key = self.identity.private_key
        if isinstance(key, rsa.RSAPrivateKey) and mechanism == "rsassa_pkcs1v15":
            return key.sign(data, padding.PKCS1v15(), digest)
        if isinstance(key, ec.EllipticCurvePrivateKey) and mechanism == "ecdsa":
            return key.sign(data, ec.ECDSA(digest))
        raise SigningError(f"cannot sign {mechanism} with a {type(key).__name__}")


def seal_pdf(
    pdf: bytes,
    *,
    seal: SigningIdentity,
    timestamper: TimeStamper,
    trust_roots: Sequence[x509.Certificate],
    reason: str,
    location: str | None = None,
    document_timestamp: bool = True,
) -> bytes:
    """Seal ``pdf`` to PAdES B-LTA; raises :class:`SealError` and returns nothing on failure
    (:class:`SealUnavailable`, 503, when the TSA is unreachable: retry later).  The errors are
    mapped as for every PAdES operation, by
    :func:`~sealpost.certificates.pades.errors.pyhanko_errors`.

    ``trust_roots`` must include the roots of the seal and of the TSA certificates: the paths
    are validated before signing, so a misconfigured key fails here rather than in a reader.
    """
    meta = signers.PdfSignatureMetadata(
        field_name=SEAL_FIELD,
        md_algorithm="sha256",
        reason=reason,
        location=location,
        name=seal.certificate.subject.rfc4514_string(),
        subfilter=fields.SigSeedSubFilter.PADES,
        embed_validation_info=True,
        use_pades_lta=document_timestamp,
        timestamp_field_name=ARCHIVE_TIMESTAMP_FIELD if document_timestamp else None,
        validation_context=validation_context(trust_roots, seal.chain),
        # VRI is optional in PAdES and cannot be written before the signature exists.
        dss_settings=DSSContentSettings(
            placement=SigDSSPlacementPreference.TOGETHER_WITH_SIGNATURE, include_vri=False
        ),
    )
    with pyhanko_errors(
        "the certificate was not sealed", failed=SealError, unavailable=SealUnavailable
    ):
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        out = signers.sign_pdf(
            writer, meta, signer=IdentitySigner(seal), timestamper=LedgerTimeStamper(timestamper)
        )
    result: bytes = out.getvalue()
    return result
