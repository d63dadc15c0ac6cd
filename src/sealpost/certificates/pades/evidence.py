"""The signer's evidence, bound into the signature as a signed CMS attribute.

The evidence (identification channel, IP, user agent, digests of the consent and of the
document) is bound as a custom signed attribute (RFC 5652 §5.3 ``signedAttrs``, so the
signature value covers it), :data:`EVIDENCE_ATTRIBUTE_OID`.  pyHanko lets us add it through
``PdfSignatureMetadata.cades_signed_attr_spec``: its ``prepare_providers`` is where CAdES
attributes are supplied (:class:`EvidenceAttrSpec`).  The value is a DER ``MessageImprint``
(RFC 3161 §2.4.1: SHA-256 and a digest) of the RFC 8785 canonical JSON of the evidence, see
:func:`evidence_digest`.

The digest, not the values: the signed PDF goes to every signer and copy recipient, and one
signer's IP address, user agent and email must not be disclosed to the others.  The values
stay in the ledger record, whose evidence hashes to the bound digest, and
:func:`bound_evidence_sha256` reads it back from a signature for that comparison.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core, tsp
from pyhanko.sign.ades.api import CAdESSignedAttrSpec
from pyhanko.sign.attributes import CMSAttributeProvider
from pyhanko.sign.validation import EmbeddedPdfSignature

from sealpost.errors import InvalidInput
from sealpost.ledger.canonical import CanonicalizationError, canonical_json

__all__ = [
    "EVIDENCE_ATTRIBUTE_OID",
    "EvidenceAttrSpec",
    "bound_evidence_sha256",
    "evidence_digest",
]

EVIDENCE_ATTRIBUTE_OID = "2.25.327423329561048904955389350377697788829"
"""Sealpost's signed attribute ``id-sealpost-signerEvidence``, value ``MessageImprint``.  A
UUID-derived OID (ITU-T X.667 §8): unique without registration, as a private one must be."""


def evidence_digest(evidence: Mapping[str, str]) -> bytes:
    """SHA-256 of the RFC 8785 canonical JSON of ``evidence``: what a signature binds."""
    try:
        return hashlib.sha256(canonical_json(dict(evidence))).digest()
    except CanonicalizationError as exc:
        raise InvalidInput(f"the signature evidence is not canonical JSON: {exc}") from None


def bound_evidence_sha256(sig: EmbeddedPdfSignature) -> str | None:
    """The evidence digest (hex) bound in ``sig``'s signed attributes, if any."""
    attrs = sig.signer_info["signed_attrs"]
    for attr in attrs if attrs else ():
        if attr["type"].dotted == EVIDENCE_ATTRIBUTE_OID:
            imprint = tsp.MessageImprint.load(attr["values"][0].dump())
            digest: bytes = imprint["hashed_message"].native
            return digest.hex()
    return None


@dataclass(frozen=True)
class EvidenceAttrSpec(CAdESSignedAttrSpec):
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
