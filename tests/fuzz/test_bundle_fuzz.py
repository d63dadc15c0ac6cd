"""Fuzzing the evidence bundle verifier: a changed bundle never verifies, and nothing crashes it.

The bundles are real (``tests/fuzz/bundles.py``: a ledger on SQLite, sealed and timestamped
by the local PKI).  Each
example changes one with an edit program (``mutations.edits``: fields replaced, deleted or
swapped with another genuine bundle's, proofs re-ordered, base64 and PEM contents damaged...)
or damages the bytes of its JSON text.  The verifier must then answer in one of two ways only:
a :class:`BundleFormatError` (422, naming the field), or a report whose failed checks say why.

Which changes are *neutral*, precisely: the verifier reads the JSON value, not its text, so
whitespace, key order, escapes and duplicate keys (the last wins, as in every JSON parser) are
neutral; the record is re-canonicalized (RFC 8785), so its key order is neutral; members the
format does not define are ignored; and the certificate lists other than the seal certificate
itself are path-building aids, so a change that still chains to the pinned root is neutral.
What a bundle *claims* (the record's canonical bytes, the proof, the checkpoint, the seal
signature and its algorithm, the timestamp token, the seal certificate) cannot change in a
bundle that verifies: that is the property.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import example, given
from hypothesis import strategies as st

from sealpost.ledger.errors import BundleFormatError
from sealpost.ledger.verify import VerificationReport, verify_bundle
from tests.fuzz.bundles import Bundle, claims, everything
from tests.fuzz.mutations import (
    Edit,
    Havoc,
    apply_edits,
    apply_havoc,
    edits,
    fuzz_settings,
    havoc_steps,
    time_bound,
)

# a failing example of 64 KiB is printed all the same; the warning would fail the run
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

CHECKPOINT: tuple[str, ...] = ("tree_head", "checkpoint")


def verify(data: Any, roots: list[x509.Certificate]) -> VerificationReport | None:
    """Verify within a hard time bound; None for a BundleFormatError, which must name a field."""
    with time_bound(20):
        try:
            report = verify_bundle(data, trust_roots=roots)
        except BundleFormatError as exc:
            refused: BundleFormatError | None = exc
        else:
            refused = None
    if refused is not None:  # `sealpost verify` says "cannot read the bundle: <field>: ..."
        assert refused.status == 422 and refused.field and refused.message
        return None
    assert report.checks
    if not report.ok:
        assert all(c.field and c.detail for c in report.failures)
        assert report.statement().startswith("This bundle proves nothing: ")
    else:
        assert "existed, unaltered" in report.statement()
    json.dumps([c.__dict__ for c in report.checks])  # what `sealpost verify --json` prints
    return report


def check_outcome(
    changed: Any, original: Bundle, genuine: list[Bundle], root: x509.Certificate
) -> None:
    """A bundle that verifies asserts what one genuine bundle asserts (pieces of several
    cannot make a new claim); a neutral change (:func:`everything` equal) still verifies."""
    for roots in ([root], []):
        report = verify(changed, roots)
        if report is not None and report.ok:
            assert claims(changed) in [claims(g) for g in genuine], report.checks
    if everything(changed) == everything(original):
        pinned = verify(changed, [root])
        assert pinned is not None and pinned.ok, pinned and pinned.failures


def test_the_genuine_bundles_verify(bundles: list[Bundle], root: x509.Certificate) -> None:
    """Without this, the properties below would pass on bundles that never verified."""
    for bundle in bundles:
        report = verify(bundle, [root])
        assert report is not None and report.ok, report and report.failures


@fuzz_settings(300, deadline_ms=3000)
@given(st.integers(0, 5), edits())
@example(0, [Edit(CHECKPOINT, "text", ("line", 1, "²"))])
@example(0, [Edit(CHECKPOINT, "text", ("line", 1, "1" * 5000))])
@example(1, [Edit(CHECKPOINT, "text", ("line", 0, "\ud800"))])
@example(2, [Edit(("inclusion_proof", "hashes"), "reorder", [5, 0])])
@example(3, [Edit(("inclusion_proof",), "donor", 1)])
@example(4, [Edit(("tree_head",), "donor", 0)])
@example(0, [Edit(("tree_head", "signature"), "text", ("insert", 0, "é"))])
@example(0, [Edit(("tree_head", "checkpoint"), "text", ("line", 2, "é" * 44))])
@example(4, [Edit(("record", "details"), "nest", 100_000)])
@example(0, [Edit(("version",), "replace", True)])
@example(0, [Edit(("record", "version"), "replace", 1.0)])
def test_a_changed_bundle_never_verifies(
    bundles: list[Bundle], root: x509.Certificate, which: int, program: list[Edit]
) -> None:
    original = bundles[which]
    donors = bundles[:which] + bundles[which + 1 :]
    check_outcome(apply_edits(original, program, donors), original, bundles, root)


JSON_TOKENS = (
    b"[",
    b"{",
    b'{"a":',
    b"]",
    b"}",
    b",",
    b":",
    b'"',
    b"\\u0000",
    b"\\ud800",
    b'"\\u00e9"',
    b"1e999",
    b"-0",
    b"NaN",
    b"Infinity",
    b" ",
    b"\t\n",
    b"true",
    b"null",
    b"\xff",
)


@fuzz_settings(200, deadline_ms=3000)
@given(st.integers(0, 5), st.booleans(), st.lists(havoc_steps(JSON_TOKENS, 5), max_size=6))
@example(0, False, [Havoc("truncate", 10_000)])
@example(0, False, [Havoc("truncate", 0), Havoc("insert", 0, b"[" * 60_000)])
@example(1, True, [Havoc("token", 1, b" \t\n ")])
@example(2, False, [Havoc("insert", 11, b"1" * 5000 + b", ")])  # {"format": 111...1, ...}
def test_the_bytes_of_a_bundle_file_never_crash_the_verifier(
    bundles: list[Bundle],
    root: x509.Certificate,
    which: int,
    indented: bool,
    steps: list[Havoc],
) -> None:
    """What ``sealpost verify bundle.json`` reads: the file's bytes, damaged."""
    texts = [json.dumps(b, indent=1 if indented else None).encode() for b in bundles]
    data = apply_havoc(texts[which], steps, texts)
    try:
        changed: Any = json.loads(data)
    except (ValueError, RecursionError):
        changed = None
    if changed is None:  # not JSON: a BundleFormatError, whatever the bytes
        for roots in ([root], []):
            assert verify(data, roots) is None
    else:  # the verifier reads the JSON value: the text's changes are the value's
        check_outcome(data, bundles[which], bundles, root)


P256 = bytes.fromhex("2a8648ce3d030107")  # the OID of the curve in an EC key (RFC 5480)


def _off_curve(der: bytes) -> bytes:
    at = der.index(b"\x03\x42\x00\x04") + 4  # the uncompressed point 04 || X || Y
    return der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1 :]


DAMAGED_DER = {
    "an unknown curve": lambda der: der.replace(P256, P256[:-1] + b"\x08", 1),
    "a point off the curve": _off_curve,
    "version 5": lambda der: der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1),
}


@pytest.mark.parametrize("which", [0, -1], ids=["seal certificate", "root"])
@pytest.mark.parametrize("damage", DAMAGED_DER.values(), ids=DAMAGED_DER.keys())
def test_a_damaged_certificate_key_is_a_failed_check_not_a_crash(
    bundles: list[Bundle], root: x509.Certificate, which: int, damage: Any
) -> None:
    """Found by the fuzz profile (flips in the PEM of a seal certificate): cryptography reads a
    key when it is first used and raised ValueError ("Invalid key") or UnsupportedAlgorithm
    (a curve OID it does not know) out of the verifier; version 5 raised InvalidVersion."""
    bundle = json.loads(json.dumps(bundles[0]))
    chain = bundle["certificates"]["seal"]
    der = x509.load_pem_x509_certificate(chain[which].encode()).public_bytes(Encoding.DER)
    damaged = damage(der)
    assert damaged != der
    chain[which] = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(damaged).decode()
    chain[which] += "-----END CERTIFICATE-----\n"
    for roots in ([root], []):
        report = verify(bundle, roots)
        assert report is None or not report.ok
