"""Offline verification of an evidence bundle, in plain words.

Each check names the bundle field it is about, so that a changed byte is reported where it
was changed.  The order of the checks is what makes that possible: the timestamp token signs
the seal signature, which signs the checkpoint, whose root the inclusion proof must reach from
the record's leaf hash.  So a changed checkpoint breaks only the signature; a changed
signature breaks the signature *and* the token's imprint; a changed token breaks only the
token; and so on down to the record.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from sealpost.ledger import merkle
from sealpost.ledger.bundle import ParsedBundle, parse_bundle
from sealpost.ledger.canonical import CanonicalizationError, canonical_json
from sealpost.ledger.errors import BundleFormatError, RecordError
from sealpost.ledger.records import EvidenceRecord, record_from_json
from sealpost.ledger.timestamps import TimestampError, TimestampInfo, verify_timestamp_token
from sealpost.ledger.tree_head import Checkpoint

CLOCK_TOLERANCE = timedelta(seconds=2)


@dataclass(frozen=True)
class Check:
    """One verification step: what was checked, on which field, and the outcome."""

    name: str
    field: str
    ok: bool
    detail: str


@dataclass
class CheckList:
    """Checks in the order they were made; valid only if there is at least one and all pass."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, field_name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, field_name, ok, detail))
        return ok


@dataclass
class VerificationReport(CheckList):
    record: EvidenceRecord | None = None
    checkpoint: Checkpoint | None = None
    timestamp: TimestampInfo | None = None
    seal_certificate: x509.Certificate | None = None
    root_pinned: bool = False
    leaf_index: int | None = None

    def statement(self) -> str:
        """What a valid bundle proves, in one paragraph a non-specialist can read."""
        if not self.ok or self.record is None or self.checkpoint is None or self.timestamp is None:
            return "This bundle proves nothing: " + "; ".join(
                f"{c.field}: {c.detail}" for c in self.failures
            )
        r, cp, ts = self.record, self.checkpoint, self.timestamp
        who = [
            f"from {r.sender.address}" if r.sender else "",
            f"to {r.recipient.address}" if r.recipient else "",
        ]
        digest = f" about content with SHA-256 {r.content.sha256}" if r.content else ""
        seal = self.seal_certificate.subject.rfc4514_string() if self.seal_certificate else "?"
        trust = (
            ""
            if self.root_pinned
            else (
                " The certificate chain was checked against the root inside the bundle only; pass "
                "--trust ROOT.pem to pin the root you expect."
            )
        )
        return (
            f"Evidence record {r.id} states that the event {r.event.name} ({r.event.uri}) "
            f"happened at {r.event_time.isoformat()} for {r.subject.type} {r.subject.id} "
            f"{' '.join(w for w in who if w)}{digest}. It is entry {self.leaf_index} of the ledger "
            f"{cp.origin!r}, whose head of size {cp.tree_size} was sealed by {seal} and "
            f"timestamped at {ts.gen_time.isoformat()} by "
            f"{ts.tsa_certificate.subject.rfc4514_string()}: the record existed, unaltered, no "
            f"later than that time.{trust}"
        )


_DAMAGED = (
    ValueError,
    TypeError,
    InvalidSignature,
    UnsupportedAlgorithm,
    x509.ExtensionNotFound,
    x509.DuplicateExtension,
    CryptographyDeprecationWarning,
)
"""What a damaged certificate raises when its key, extensions or signature are first read
(cryptography parses them lazily): "Invalid key" for a point off the curve, UnsupportedAlgorithm
for a changed curve OID, and a deprecation warning where warnings are errors."""


def _who(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except _DAMAGED:
        return "a certificate with an unreadable name"


def _chain_problem(
    chain: Sequence[x509.Certificate], at: datetime, trust_roots: Sequence[x509.Certificate]
) -> str | None:
    """Why ``chain`` (leaf first, root last) is not a valid path at ``at``, or None."""
    try:
        for child, issuer in itertools.pairwise(chain):
            child.verify_directly_issued_by(issuer)
            constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints)
            if not constraints.value.ca:
                return f"{_who(issuer)} is not a CA"
        chain[-1].verify_directly_issued_by(chain[-1])
    except _DAMAGED as exc:
        return f"the certificate chain does not verify ({exc or type(exc).__name__})"
    for cert in chain:
        if not cert.not_valid_before_utc - CLOCK_TOLERANCE <= at <= cert.not_valid_after_utc:
            return f"{_who(cert)} was not valid at {at.isoformat()}"
    if trust_roots and chain[-1] not in trust_roots:
        return "the chain does not end at a trusted root"
    return None


def _signature_ok(cert: x509.Certificate, algorithm: str, signature: bytes, data: bytes) -> bool:
    try:
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm == "ecdsa-with-SHA256":
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm == "sha256WithRSAEncryption":
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except _DAMAGED:  # a damaged key verifies nothing; InvalidSignature included
        return False
    return True


@dataclass(frozen=True)
class _HeadOutcome:
    checks: tuple[Check, ...]
    checkpoint: Checkpoint | None
    timestamp: TimestampInfo | None
    seal_certificate: x509.Certificate


class HeadVerifications:
    """Outcomes of tree-head checks already made, for the bundles of one batch.

    A certificate or an export holds many bundles sealed under the same head; its seal chain,
    signature and RFC 3161 token are checked once.  The key covers every input of those checks
    (checkpoint, signature, token, both chains, the pinned roots), so a bundle whose head
    differs in any byte is checked on its own.  Each bundle's own checks (record, leaf hash,
    inclusion path to that head's root) are always made.
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._outcomes: dict[bytes, _HeadOutcome] = {}

    @staticmethod
    def key(b: ParsedBundle, trust_roots: Sequence[x509.Certificate]) -> bytes:
        digest = hashlib.sha256()
        for part in (
            b.checkpoint_text.encode(),
            b.signature_algorithm.encode(),
            b.signature,
            b.timestamp_token,
            *(c.public_bytes(serialization.Encoding.DER) for c in b.seal_chain),
            b"|tsa|",
            *(c.public_bytes(serialization.Encoding.DER) for c in b.tsa_chain),
            b"|roots|",
            *(c.public_bytes(serialization.Encoding.DER) for c in trust_roots),
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.digest()

    def get(self, key: bytes) -> _HeadOutcome | None:
        return self._outcomes.get(key)

    def put(self, key: bytes, outcome: _HeadOutcome) -> None:
        if len(self._outcomes) < self.limit:
            self._outcomes[key] = outcome


def verify_bundle(
    data: bytes | str | dict[str, Any],
    *,
    trust_roots: Sequence[x509.Certificate] = (),
    heads: HeadVerifications | None = None,
) -> VerificationReport:
    """Verify every part of a bundle; raises BundleFormatError only if it cannot be read.

    ``heads``, shared by the bundles of one batch, checks each distinct signed head once.
    """
    bundle = parse_bundle(data)
    report = VerificationReport(root_pinned=bool(trust_roots))
    report.leaf_index = bundle.leaf_index
    if heads is None:
        checkpoint = _check_head(bundle, report, trust_roots)
    else:
        key = heads.key(bundle, trust_roots)
        known = heads.get(key)
        if known is None:
            before = len(report.checks)
            checkpoint = _check_head(bundle, report, trust_roots)
            assert report.seal_certificate is not None
            known = _HeadOutcome(
                tuple(report.checks[before:]),
                checkpoint,
                report.timestamp,
                report.seal_certificate,
            )
            heads.put(key, known)
        else:
            report.checks.extend(known.checks)
            report.checkpoint = checkpoint = known.checkpoint
            report.timestamp = known.timestamp
            report.seal_certificate = known.seal_certificate
    _check_record(bundle, report, checkpoint)
    return report


def _check_head(
    b: ParsedBundle, report: VerificationReport, trust_roots: Sequence[x509.Certificate]
) -> Checkpoint | None:
    try:
        checkpoint: Checkpoint | None = Checkpoint.parse(b.checkpoint_text)
    except BundleFormatError as exc:
        report.add("checkpoint", exc.field, False, exc.message)
        checkpoint = None
    report.checkpoint = checkpoint
    report.seal_certificate = b.seal_chain[0]
    at = checkpoint.time if checkpoint else b.seal_chain[0].not_valid_before_utc
    problem = _chain_problem(b.seal_chain, at, trust_roots)
    report.add("seal chain", "certificates.seal", problem is None, problem or "valid")

    signature_ok = _signature_ok(
        b.seal_chain[0], b.signature_algorithm, b.signature, b.checkpoint_text.encode()
    )
    tsa_roots = list(trust_roots) or [b.tsa_chain[-1]]
    try:
        report.timestamp = verify_timestamp_token(
            b.timestamp_token, b.signature, trust_roots=tsa_roots, extra_certificates=b.tsa_chain
        )
        token_error: TimestampError | None = None
    except TimestampError as exc:
        token_error = exc
    imprint_mismatch = token_error is not None and token_error.reason == "imprint-mismatch"
    if signature_ok:
        report.add("seal signature", "tree_head.signature", True, "the seal signs this checkpoint")
    elif imprint_mismatch:
        report.add(
            "seal signature",
            "tree_head.signature",
            False,
            "the signature was altered: it neither verifies nor matches its timestamp",
        )
    else:
        report.add(
            "seal signature",
            "tree_head.checkpoint",
            False,
            "the checkpoint was altered: the seal signature does not cover these bytes",
        )
    if token_error is None:
        report.add("timestamp", "tree_head.timestamp_token", True, "valid RFC 3161 token")
    elif not imprint_mismatch or signature_ok:
        report.add("timestamp", "tree_head.timestamp_token", False, token_error.message)
    if checkpoint and report.timestamp:
        late_enough = report.timestamp.gen_time + CLOCK_TOLERANCE >= checkpoint.time
        report.add(
            "head time",
            "tree_head.checkpoint",
            late_enough,
            "timestamped after the head was signed"
            if late_enough
            else "the checkpoint claims a time after its own timestamp",
        )
    return checkpoint


def _check_record(
    b: ParsedBundle, report: VerificationReport, checkpoint: Checkpoint | None
) -> None:
    try:
        report.record = record_from_json(b.record)
        canonical = canonical_json(b.record)
    except (RecordError, CanonicalizationError) as exc:
        report.add("record", "record", False, f"not a valid evidence record: {exc}")
        return
    leaf = merkle.leaf_hash(canonical)
    if not report.add(
        "record hash",
        "record",
        leaf == b.leaf_hash,
        "matches the sealed leaf"
        if leaf == b.leaf_hash
        else "the record was altered: its hash no longer matches the sealed leaf",
    ):
        return
    if checkpoint is None:
        return
    if b.tree_size != checkpoint.tree_size:
        report.add(
            "inclusion",
            "inclusion_proof.tree_size",
            False,
            f"the proof is for size {b.tree_size} but the checkpoint has {checkpoint.tree_size}",
        )
        return
    try:
        merkle.verify_inclusion(leaf, b.leaf_index, b.tree_size, b.proof, checkpoint.root_hash)
        report.add("inclusion", "inclusion_proof", True, "the record is in the sealed tree")
    except merkle.ProofError as exc:
        report.add(
            "inclusion",
            "inclusion_proof",
            False,
            f"the inclusion proof (leaf_index or hashes) was altered: {exc}",
        )
    if report.timestamp is not None:
        in_time = report.record.event_time <= report.timestamp.gen_time + CLOCK_TOLERANCE
        report.add(
            "event time",
            "record.event_time",
            in_time,
            "before the timestamp" if in_time else "claims a time after the ledger sealed it",
        )
