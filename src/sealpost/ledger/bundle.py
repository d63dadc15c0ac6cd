"""The evidence bundle: everything needed to verify one record offline, in one JSON file.

Format ``sealpost-evidence-bundle`` version 1, documented field by field in
``docs/evidence-format.md``::

    {"format": "sealpost-evidence-bundle", "version": 1,
     "record": {...},                                  # the evidence record (RFC 8785 hashed)
     "inclusion_proof": {"leaf_index": i, "tree_size": n,
                         "leaf_hash": b64, "hashes": [b64, ...]},   # RFC 9162 §2.1.3
     "tree_head": {"checkpoint": "...", "signature_algorithm": "...",
                   "signature": b64, "timestamp_token": b64},        # C2SP + RFC 3161
     "certificates": {"seal": [pem, ...], "tsa": [pem, ...]}}       # leaf first, root last
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealpost.ledger.errors import BundleFormatError, shown
from sealpost.ledger.storage import StoredRecord
from sealpost.ledger.tree_head import SignedTreeHead

BUNDLE_FORMAT = "sealpost-evidence-bundle"
BUNDLE_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def token_certificates(token_der: bytes) -> list[x509.Certificate]:
    """The certificates a TSA put in its token (signer first when the TSA orders them so)."""
    signed_data = cms.ContentInfo.load(token_der)["content"]
    return [
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in signed_data["certificates"] or []
        if choice.name == "certificate"
    ]


def build_bundle(record: StoredRecord, head: SignedTreeHead, proof: list[bytes]) -> dict[str, Any]:
    assert record.leaf_index is not None
    tsa_chain = [
        c.public_bytes(Encoding.PEM).decode() for c in token_certificates(head.timestamp_token)
    ]
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "record": json.loads(record.canonical),
        "inclusion_proof": {
            "leaf_index": record.leaf_index,
            "tree_size": head.tree_size,
            "leaf_hash": _b64(record.leaf_hash),
            "hashes": [_b64(h) for h in proof],
        },
        "tree_head": {
            "checkpoint": head.checkpoint.to_text(),
            "signature_algorithm": head.signature_algorithm,
            "signature": _b64(head.signature),
            "timestamp_token": _b64(head.timestamp_token),
        },
        "certificates": {"seal": list(head.seal_chain_pem), "tsa": tsa_chain},
    }


@dataclass(frozen=True)
class ParsedBundle:
    """A bundle whose shape was checked; its cryptography is checked by ``verify``."""

    record: dict[str, Any]
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]
    checkpoint_text: str
    signature_algorithm: str
    signature: bytes
    timestamp_token: bytes
    seal_chain: list[x509.Certificate]
    tsa_chain: list[x509.Certificate]


def _get(obj: Any, key: str, kind: type, field: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise BundleFormatError("is missing", field=field)
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleFormatError(f"must be {kind.__name__}", field=field)
    return value


def _text(obj: Any, key: str, field: str) -> str:
    """A string that is valid Unicode: the seal signs its UTF-8 bytes (JSON's ``\\ud800``
    escape gives a lone surrogate, which has none)."""
    value: str = _get(obj, key, str, field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleFormatError("is not valid Unicode text", field=field) from None
    return value


def _b64_field(obj: Any, key: str, field: str) -> bytes:
    try:
        return base64.b64decode(_get(obj, key, str, field), validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character (a plain ValueError)
        raise BundleFormatError("is not valid base64", field=field) from None


def _certs(values: Any, field: str) -> list[x509.Certificate]:
    if not isinstance(values, list) or not values:
        raise BundleFormatError("must be a non-empty list of PEM certificates", field=field)
    out = []
    for i, pem in enumerate(values):
        try:
            out.append(x509.load_pem_x509_certificate(pem.encode("ascii")))
        except (ValueError, AttributeError, UnicodeEncodeError, x509.InvalidVersion):
            raise BundleFormatError("is not a PEM certificate", field=f"{field}[{i}]") from None
    return out


def parse_bundle(data: bytes | str | dict[str, Any]) -> ParsedBundle:
    """Check a bundle's shape, with an error naming the field when it is off."""
    if isinstance(data, bytes | str):
        try:
            obj = json.loads(data)
        except ValueError as exc:  # not JSON, not UTF-8, or a number past 4,300 digits
            raise BundleFormatError(f"not JSON ({exc})") from None
        except RecursionError:  # a bundle is a few levels deep; thousands is an attack
            raise BundleFormatError("not JSON (nested too deeply)") from None
    else:
        obj = data
    if not isinstance(obj, dict):
        raise BundleFormatError("must be a JSON object")
    if obj.get("format") != BUNDLE_FORMAT:
        raise BundleFormatError(f"unknown format {shown(obj.get('format'))}", field="format")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != BUNDLE_VERSION:
        raise BundleFormatError(
            f"unsupported version {shown(version)} (this verifier reads {BUNDLE_VERSION})",
            field="version",
        )
    record = _get(obj, "record", dict, "record")
    proof = _get(obj, "inclusion_proof", dict, "inclusion_proof")
    hashes = _get(proof, "hashes", list, "inclusion_proof.hashes")
    decoded_hashes = []
    for i, item in enumerate(hashes):
        decoded_hashes.append(_b64_field({"h": item}, "h", f"inclusion_proof.hashes[{i}]"))
    head = _get(obj, "tree_head", dict, "tree_head")
    certs = _get(obj, "certificates", dict, "certificates")
    return ParsedBundle(
        record=record,
        leaf_index=_get(proof, "leaf_index", int, "inclusion_proof.leaf_index"),
        tree_size=_get(proof, "tree_size", int, "inclusion_proof.tree_size"),
        leaf_hash=_b64_field(proof, "leaf_hash", "inclusion_proof.leaf_hash"),
        proof=decoded_hashes,
        checkpoint_text=_text(head, "checkpoint", "tree_head.checkpoint"),
        signature_algorithm=_get(head, "signature_algorithm", str, "tree_head.signature_algorithm"),
        signature=_b64_field(head, "signature", "tree_head.signature"),
        timestamp_token=_b64_field(head, "timestamp_token", "tree_head.timestamp_token"),
        seal_chain=_certs(certs.get("seal"), "certificates.seal"),
        tsa_chain=_certs(certs.get("tsa"), "certificates.tsa"),
    )
