"""A certificate of a message that carried an access secret: no original, and still valid.

Sealpost's own notices and codes hold a link or code that would let the sender act as the
recipient, so their certificate states the message's digest and size and embeds no original.
The verifier accepts that only on the word of a sealed SubmissionAcceptance; a certificate
whose original was simply left out is still refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cryptography import x509

from sealpost.app import Sealpost
from sealpost.certificates import render_certificate, seal_pdf, verify_certificate_pdf
from sealpost.certificates.model import CertificateData
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from tests.certificates.support import Scenario, make_certificate_data, poppler


def _sealed(data: CertificateData, identities: LocalIdentities, timestamper: TimeStamper) -> bytes:
    return seal_pdf(
        render_certificate(data),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="test",
    )


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def test_a_withheld_original_verifies_on_the_word_of_the_sealed_acceptance(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
    tmp_path: Path,
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(access_secret=True))
    data = dataclasses.replace(data, access_secret=True, eml=b"")
    pdf = _sealed(data, identities, timestamper)
    report = verify_certificate_pdf(pdf, trust_roots=[root])
    assert report.ok, report.failures
    assert "original.eml" not in report.attachments
    manifest = json.loads(report.attachments["manifest.json"])
    assert manifest["message"]["file"] is None
    assert manifest["message"]["withheld"] == "access_secret"
    withheld = next(c for c in report.checks if c.name == "message digest")
    assert withheld.ok and data.content_sha256 in withheld.detail
    assert "bytes, not attached: it carried a single-use access secret" in report.statement()
    words = _text(pdf, tmp_path)
    assert "single-use access secret" in words and "operator" in words
    assert f"{data.content_size} bytes, not embedded" in words


def test_an_original_left_out_without_the_evidence_saying_why_is_refused(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
) -> None:
    """A certificate that claims "withheld" for an ordinary message (its acceptance says
    nothing of a secret) is refused, even sealed by the right key."""
    data = make_certificate_data(ledger, tenant, Scenario())
    stripped = dataclasses.replace(data, access_secret=True, eml=b"")
    report = verify_certificate_pdf(_sealed(stripped, identities, timestamper), trust_roots=[root])
    assert not report.ok
    failed = [c for c in report.failures if c.name == "message digest"]
    assert failed and "no verified SubmissionAcceptance" in failed[0].detail


def test_a_withheld_original_must_still_be_the_one_every_record_states(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(access_secret=True))
    lying = dataclasses.replace(data, access_secret=True, eml=b"", content_sha256="00" * 32)
    report = verify_certificate_pdf(_sealed(lying, identities, timestamper), trust_roots=[root])
    assert not report.ok
    assert any("is not the attached message's" in c.detail for c in report.failures)
