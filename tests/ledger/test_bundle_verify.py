"""Evidence bundles: a genuine one verifies; changing any byte of any part names that part."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sealpost.app import Sealpost
from sealpost.ledger.errors import BundleFormatError
from sealpost.ledger.verify import HeadVerifications, verify_bundle
from sealpost.pki.keys import init_keys
from tests.support.records import non_delivery, submission

Bundle = dict[str, Any]


@pytest.fixture
def bundle(sealpost: Sealpost, tenant_id: str) -> Bundle:
    records = [submission(tenant_id, i) for i in range(12)]
    sealpost.log_storage.append(records)
    sealpost.sequencer.seal_pending()
    return sealpost.ledger.bundle(records[5].id, tenant_id)


@pytest.fixture
def root(keys_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())


def flip_b64(value: str, at: int = 10) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[at % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_genuine_bundle_verifies_and_says_what_it_proves(
    bundle: Bundle, root: x509.Certificate
) -> None:
    report = verify_bundle(json.dumps(bundle), trust_roots=[root])
    assert report.ok, report.failures
    names = {c.name for c in report.checks}
    assert {"seal chain", "seal signature", "timestamp", "record hash", "inclusion"} <= names
    statement = report.statement()
    assert "SubmissionAcceptance" in statement and "alice@example.com" in statement
    assert "bob@example.org" in statement and "existed, unaltered" in statement
    assert report.record is not None and report.record.id == bundle["record"]["id"]


def test_a_negative_event_bundle_verifies_with_its_reasons(
    sealpost: Sealpost, tenant_id: str, root: x509.Certificate
) -> None:
    record = non_delivery(tenant_id, "comm-1")
    sealpost.log_storage.append([record])
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(record.id, tenant_id)
    assert bundle["record"]["reasons"][0]["code"] == "smtp-5xx"
    assert verify_bundle(bundle, trust_roots=[root]).ok


def _set_record_field(path: str, value: Any) -> Callable[[Bundle], None]:
    def change(b: Bundle) -> None:
        target = b["record"]
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return change


TAMPERS: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "record event": (_set_record_field("event.name", "ContentConsignment"), "record"),
    "record time": (_set_record_field("event_time", "2020-01-01T00:00:00.000000Z"), "record"),
    "record recipient": (_set_record_field("recipient.address", "eve@example.net"), "record"),
    "record digest": (_set_record_field("content.sha256", "0" * 64), "record"),
    "record extra field": (_set_record_field("note", "accepted by phone"), "record"),
    "leaf hash": (
        lambda b: b["inclusion_proof"].__setitem__(
            "leaf_hash", flip_b64(b["inclusion_proof"]["leaf_hash"])
        ),
        "record",
    ),
    "proof hash": (
        lambda b: b["inclusion_proof"]["hashes"].__setitem__(
            1, flip_b64(b["inclusion_proof"]["hashes"][1])
        ),
        "inclusion_proof",
    ),
    "proof hash dropped": (lambda b: b["inclusion_proof"]["hashes"].pop(), "inclusion_proof"),
    "leaf index": (
        lambda b: b["inclusion_proof"].__setitem__("leaf_index", 4),
        "inclusion_proof",
    ),
    "tree size": (
        lambda b: b["inclusion_proof"].__setitem__("tree_size", 11),
        "inclusion_proof.tree_size",
    ),
    "checkpoint root": (
        lambda b: b["tree_head"].__setitem__(
            "checkpoint",
            "\n".join(
                flip_b64(line) if i == 2 else line
                for i, line in enumerate(b["tree_head"]["checkpoint"].split("\n"))
            ),
        ),
        "tree_head.checkpoint",
    ),
    "checkpoint size": (
        lambda b: b["tree_head"].__setitem__(
            "checkpoint", b["tree_head"]["checkpoint"].replace("\n12\n", "\n13\n")
        ),
        "tree_head.checkpoint",
    ),
    "checkpoint origin": (
        lambda b: b["tree_head"].__setitem__(
            "checkpoint",
            "evil.example/log" + b["tree_head"]["checkpoint"][len("test.sealpost.local/ledger") :],
        ),
        "tree_head.checkpoint",
    ),
    "signature": (
        lambda b: b["tree_head"].__setitem__("signature", flip_b64(b["tree_head"]["signature"])),
        "tree_head.signature",
    ),
    "timestamp token": (
        lambda b: b["tree_head"].__setitem__(
            "timestamp_token", flip_b64(b["tree_head"]["timestamp_token"], at=-80)
        ),
        "tree_head.timestamp_token",
    ),
}


@pytest.mark.parametrize("what", sorted(TAMPERS))
def test_altering_any_part_fails_and_names_it(
    bundle: Bundle, root: x509.Certificate, what: str
) -> None:
    change, expected_field = TAMPERS[what]
    tampered = copy.deepcopy(bundle)
    change(tampered)
    assert tampered != bundle
    report = verify_bundle(tampered, trust_roots=[root])
    assert not report.ok
    failed_fields = [c.field for c in report.failures]
    assert expected_field in failed_fields, report.failures
    assert "proves nothing" in report.statement()


@pytest.mark.parametrize("what", sorted(TAMPERS))
def test_a_head_checked_once_per_batch_still_catches_every_alteration_of_a_later_bundle(
    sealpost: Sealpost, tenant_id: str, bundle: Bundle, root: x509.Certificate, what: str
) -> None:
    heads = HeadVerifications()
    neighbour = sealpost.ledger.bundle(bundle["record"]["id"], tenant_id)
    genuine = verify_bundle(neighbour, trust_roots=[root], heads=heads)
    assert genuine.ok
    change, expected_field = TAMPERS[what]
    tampered = copy.deepcopy(bundle)
    change(tampered)
    batched = verify_bundle(tampered, trust_roots=[root], heads=heads)
    alone = verify_bundle(tampered, trust_roots=[root])
    assert not batched.ok and expected_field in [c.field for c in batched.failures]
    assert batched.checks == alone.checks
    again = verify_bundle(bundle, trust_roots=[root], heads=heads)  # the genuine one, cached
    assert again.ok and again.checks == verify_bundle(bundle, trust_roots=[root]).checks
    assert again.statement() == verify_bundle(bundle, trust_roots=[root]).statement()


def test_a_seal_certificate_from_another_ca_is_refused(
    bundle: Bundle, root: x509.Certificate, tmp_path: Path
) -> None:
    other = init_keys(tmp_path / "other")
    tampered = copy.deepcopy(bundle)
    tampered["certificates"]["seal"] = [
        (tmp_path / "other" / "seal.pem").read_text(),
        (tmp_path / "other" / "root-ca.pem").read_text(),
    ]
    report = verify_bundle(tampered, trust_roots=[root])
    failed = {c.field for c in report.failures}
    assert "certificates.seal" in failed  # not our root
    assert "tree_head.checkpoint" in failed or "tree_head.signature" in failed
    assert other is not None


def test_without_a_pinned_root_the_report_says_so(bundle: Bundle) -> None:
    report = verify_bundle(bundle)
    assert report.ok and not report.root_pinned
    assert "--trust" in report.statement()


def test_a_pinned_root_that_is_not_the_bundles_fails(bundle: Bundle, tmp_path: Path) -> None:
    init_keys(tmp_path / "elsewhere")
    stranger = x509.load_pem_x509_certificate((tmp_path / "elsewhere" / "root-ca.pem").read_bytes())
    report = verify_bundle(bundle, trust_roots=[stranger])
    assert {"certificates.seal", "tree_head.timestamp_token"} <= {c.field for c in report.failures}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"not json at all", "bundle"),
        (b"[1, 2]", "bundle"),
        (json.dumps({"format": "something-else", "version": 1}).encode(), "format"),
        (json.dumps({"format": "sealpost-evidence-bundle", "version": 99}).encode(), "version"),
        (json.dumps({"format": "sealpost-evidence-bundle", "version": 1}).encode(), "record"),
    ],
)
def test_unreadable_bundles_get_a_clear_error(data: bytes, field: str) -> None:
    with pytest.raises(BundleFormatError) as caught:
        verify_bundle(data)
    assert caught.value.field == field
    assert caught.value.status == 422


def test_a_certificate_that_is_not_pem_is_named(bundle: Bundle) -> None:
    tampered = copy.deepcopy(bundle)
    tampered["certificates"]["tsa"][0] = tampered["certificates"]["tsa"][0].replace("MII", "MIJ", 1)
    with pytest.raises(BundleFormatError) as caught:
        verify_bundle(tampered)
    assert caught.value.field == "certificates.tsa[0]"
