"""Received and delivered digests on the certificate: stated in plain words, never beyond the
evidence, and checked against the sealed records by the verifier."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader

from sealpost.app import Sealpost
from sealpost.certificates import render_certificate, seal_pdf, verify_certificate_pdf
from sealpost.certificates.embedded import read_embedded_files
from sealpost.certificates.model import CertificateData
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from tests.certificates.support import Scenario, make_certificate_data, poppler

DELIVERED = "d" * 64


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def _data(ledger: Sealpost, tenant: str, consignment: dict[str, object]) -> CertificateData:
    return make_certificate_data(ledger, tenant, Scenario(consignment=consignment))


def test_both_digests_and_only_the_changes_the_record_states_are_shown(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    changes = {"fields_added": ["DKIM-Signature", "Received"], "line_ends_converted": True}
    data = _data(
        ledger,
        tenant,
        {"delivered_sha256": DELIVERED, "delivered_size": 900, "delivered_changes": changes},
    )
    pdf = render_certificate(data)
    text = _text(pdf, tmp_path)
    assert f"Received SHA-256 {data.content_sha256}" in text
    assert f"Delivered SHA-256 {DELIVERED}" in text
    assert "the copy as transmitted to the next hop, 900 bytes" in text  # no remote.host
    assert "added the header fields DKIM-Signature and Received at the top" in text
    assert "converted bare LF or CR line ends to CRLF" in text
    assert "Bcc" not in text  # the record does not say one was removed
    manifest = json.loads(read_embedded_files(PdfFileReader(io.BytesIO(pdf)))["manifest.json"])
    (entry,) = manifest["message"]["delivered"]
    assert entry["sha256"] == DELIVERED and entry["size"] == 900
    assert entry["record_id"] == data.events[-1].record_id and entry["n"] == len(data.events)


def test_a_record_that_does_not_state_its_changes_is_not_explained(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    text = _text(
        render_certificate(_data(ledger, tenant, {"delivered_sha256": DELIVERED})), tmp_path
    )
    assert f"Delivered SHA-256 {DELIVERED}" in text
    assert "does not state how this copy differs" in text
    assert "converted" not in text and "added the header" not in text


def test_an_unsealed_delivery_is_stated_not_claimed_as_proven(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    data = _data(ledger, tenant, {"delivered_sha256": DELIVERED})
    sealed_text = _text(render_certificate(data), tmp_path)
    assert "stated, not yet proven" not in sealed_text
    unsealed = dataclasses.replace(data.events[-1], bundle=None)
    data = dataclasses.replace(data, events=(*data.events[:-1], unsealed))
    text = _text(render_certificate(data), tmp_path)
    assert f"Delivered SHA-256 {DELIVERED}" in text
    assert "was not sealed in the ledger when this version was issued" in text
    assert "stated, not yet proven" in text


def test_without_a_delivered_digest_there_is_nothing_to_compare(
    ledger: Sealpost, tenant: str, tmp_path: Path
) -> None:
    text = _text(render_certificate(make_certificate_data(ledger, tenant, Scenario())), tmp_path)
    assert "What was received and what was delivered" not in text
    assert "Delivered SHA-256" not in text


def _seal(data: CertificateData, identities: LocalIdentities, timestamper: TimeStamper) -> bytes:
    return seal_pdf(
        render_certificate(data),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="Evidence certificate",
        location="Sealpost test",
    )


def test_the_verifier_ties_each_stated_copy_to_its_sealed_record(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
) -> None:
    data = _data(ledger, tenant, {"delivered_sha256": DELIVERED, "delivered_size": 900})
    report = verify_certificate_pdf(_seal(data, identities, timestamper), trust_roots=[root])
    assert report.ok, report.failures
    (check,) = [c for c in report.checks if c.name == "delivered digest"]
    assert check.ok and DELIVERED in check.detail
    # a certificate stating another delivered digest than its sealed record is caught, even
    # though Sealpost's own seal is intact
    *earlier, last = data.events
    forged_event = dataclasses.replace(last, details={**last.details, "delivered_sha256": "f" * 64})
    forged = dataclasses.replace(data, events=(*earlier, forged_event))
    report = verify_certificate_pdf(_seal(forged, identities, timestamper), trust_roots=[root])
    assert not report.ok
    (failure,) = report.failures
    assert failure.name == "delivered digest"
    assert f"the certificate states SHA-256 {'f' * 64}, the record {DELIVERED}" in failure.detail
