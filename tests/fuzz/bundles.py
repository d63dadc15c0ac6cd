"""Genuine evidence bundles for the fuzz properties, and what a bundle claims.

The oracle of the bundle properties: a bundle that verifies claims what a genuine bundle
claims (:func:`claims`), and a change that leaves :func:`everything` equal is neutral.
"""

from __future__ import annotations

import json
from typing import Any

from asn1crypto import cms
from cryptography.hazmat.primitives.serialization import Encoding

from sealpost.app import Sealpost
from sealpost.ledger.bundle import parse_bundle
from sealpost.ledger.canonical import CanonicalizationError, canonical_json
from sealpost.ledger.errors import BundleFormatError
from sealpost.ledger.records import Party, Subject, new_record
from tests.support.records import non_delivery, submission

Bundle = dict[str, Any]

HOSTILE_TEXT = "[/x][link=https://evil.example]click[/link]\x1b]0;owned\x07\x1bc\x9b31m"
"""Text an email's From can carry into a record (rich markup, ESC and C1 sequences): a bundle
that holds it is genuine and verifies, and ``sealpost verify`` must print it harmlessly."""


def genuine_bundles(sp: Sealpost, tenant: str) -> list[Bundle]:
    """Six genuine bundles: three records of one tree head, then three of a larger one (a
    negative event with its reasons, and a record with :data:`HOSTILE_TEXT`), so that donors
    have other proofs and heads."""
    first = [submission(tenant, i) for i in range(12)]
    sp.log_storage.append(first)
    sp.sequencer.seal_pending()
    out = [sp.ledger.bundle(first[i].id, tenant) for i in (0, 5, 11)]
    hostile = new_record(
        tenant_id=tenant,
        event="SubmissionAcceptance",
        subject=Subject("communication", "c-2"),
        sender=Party(f"{HOSTILE_TEXT}@evil.example", HOSTILE_TEXT),
        details={"message": {"subject": HOSTILE_TEXT}},
    )
    later = [submission(tenant, i) for i in range(12, 16)] + [non_delivery(tenant, "c-1"), hostile]
    sp.log_storage.append(later)
    sp.sequencer.seal_pending()
    out += [sp.ledger.bundle(r.id, tenant) for r in (first[5], later[-2], hostile)]
    return out


def _signed_token(token: bytes) -> tuple[bytes, ...] | bytes:
    """The parts of an RFC 3161 token its signature covers (RFC 5652 §5.4): the TSTInfo and
    each signer's signed attributes, signature and identifiers.  Its ``certificates`` (and
    unsigned attributes) are not signed: path-building aids, like the bundle's lists."""
    try:
        signed_data = cms.ContentInfo.load(token)["content"]
        parts = [signed_data["encap_content_info"].dump()]
        for info in signed_data["signer_infos"]:
            parts += [info[k].dump() for k in ("sid", "digest_algorithm", "signed_attrs")]
            parts += [info[k].dump() for k in ("signature_algorithm", "signature")]
    except Exception:  # unreadable: its bytes are all there is to compare
        return token
    return tuple(parts)


def claims(bundle: Any) -> tuple[Any, ...] | None:
    """What a bundle asserts, decoded; None when it does not even parse."""
    try:
        p = parse_bundle(bundle)
    except BundleFormatError:
        return None
    try:
        record: bytes | None = canonical_json(p.record)
    except CanonicalizationError:
        record = None
    doc = json.loads(bundle) if isinstance(bundle, bytes | str) else bundle
    return (
        repr(doc["format"]),  # repr: True == 1 in Python, not in JSON
        repr(doc["version"]),
        record,
        p.leaf_index,
        p.tree_size,
        p.leaf_hash,
        tuple(p.proof),
        p.checkpoint_text,
        p.signature_algorithm,
        p.signature,
        _signed_token(p.timestamp_token),
        p.seal_chain[0].public_bytes(Encoding.DER),
    )


def everything(bundle: Any) -> tuple[Any, ...] | None:
    """:func:`claims` plus both certificate lists: equal means the change was neutral."""
    found = claims(bundle)
    if found is None:
        return None
    p = parse_bundle(bundle)
    chains = tuple(
        tuple(c.public_bytes(Encoding.DER) for c in chain) for chain in (p.seal_chain, p.tsa_chain)
    )
    return (*found, p.timestamp_token, chains)
