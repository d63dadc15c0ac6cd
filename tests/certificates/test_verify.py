"""Verifying a certificate: a genuine one says what it proves; every tampering is named."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from sealpost.app import Sealpost
from sealpost.certificates import (
    NotACertificate,
    render_certificate,
    seal_pdf,
    verify_certificate_pdf,
)
from sealpost.errors import InvalidInput
from sealpost.ledger.etsi_view import schema as etsi_view_schema
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import (
    LocalIdentities,
    SigningIdentity,
    init_keys,
    load_local_identities,
)
from tests.certificates.support import Scenario, Sealed, make_certificate_data, poppler


def failures(pdf: bytes, root: x509.Certificate) -> dict[str, list[str]]:
    report = verify_certificate_pdf(pdf, trust_roots=[root])
    assert not report.ok
    out: dict[str, list[str]] = {}
    for check in report.failures:
        out.setdefault(check.name, []).append(f"{check.field}: {check.detail}")
    return out


def test_a_genuine_certificate_verifies_and_says_what_it_proves(
    sealed: Sealed, root: x509.Certificate
) -> None:
    report = verify_certificate_pdf(sealed.pdf, trust_roots=[root])
    assert report.ok, report.failures
    data = sealed.data
    assert report.version == 2 and report.supersedes_sha256 == "ab" * 32
    assert report.communication_id == data.communication_id
    assert report.root_pinned and report.sealed_at and report.archived_at
    names = {c.name for c in report.checks}
    assert {"seal", "seal certificate", "seal timestamp", "document timestamp"} <= names
    assert {"whole file signed", "manifest", "message digest", "evidence"} <= names
    digest = next(c for c in report.checks if c.name == "message digest")
    assert digest.ok and data.content_sha256 in digest.detail
    assert len(report.evidence) == len(data.events) == 3
    assert all(bundle.ok for bundle in report.evidence.values())
    statement = report.statement()
    assert f"version 2 for communication {data.communication_id}" in statement
    assert "Sealpost Evidence Seal" in statement and "Time-Stamping Authority" in statement
    assert f"alice@example.com submitted a message of SHA-256 {data.content_sha256}" in statement
    assert "bob@example.org" in statement
    for event in data.events:
        assert event.event in statement and event.summary in statement
    assert "--trust" not in statement
    assert report.attachments["original.eml"] == data.eml


def test_without_roots_the_embedded_root_is_used_and_the_statement_says_so(
    sealed: Sealed,
) -> None:
    report = verify_certificate_pdf(sealed.pdf)
    assert report.ok, report.failures
    assert not report.root_pinned
    assert "pass --trust ROOT.pem" in report.statement()


def test_another_root_is_not_trusted(sealed: Sealed, tmp_path: Path) -> None:
    init_keys(tmp_path / "other", organization="Mallory")
    other = load_local_identities(tmp_path / "other").root
    found = failures(sealed.pdf, other)
    assert "seal certificate" in found and "evidence" in found
    assert (
        "This certificate proves nothing"
        in verify_certificate_pdf(sealed.pdf, trust_roots=[other]).statement()
    )


def test_a_byte_changed_inside_the_sealed_range_breaks_the_seal(
    sealed: Sealed, root: x509.Certificate
) -> None:
    pdf = bytearray(sealed.pdf)
    start = pdf.index(b"stream\n", len(pdf) // 4) + 40  # inside a compressed stream
    pdf[start] ^= 0x01
    found = failures(bytes(pdf), root)
    assert any("the document was altered" in f for f in found.get("seal", [])), found


def test_bytes_appended_after_eof_are_not_covered(sealed: Sealed, root: x509.Certificate) -> None:
    found = failures(sealed.pdf + b"\n% appended\n", root)
    assert found.keys() == {"whole file signed"}
    assert "appended after sealing" in found["whole file signed"][0]


Change = Callable[[IncrementalPdfFileWriter], None]


def _update(pdf: bytes, change: Change) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    change(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_an_incremental_update_that_changes_the_text_is_named(
    sealed: Sealed, root: x509.Certificate, tmp_path: Path
) -> None:
    def forge(writer: IncrementalPdfFileWriter) -> None:
        font = generic.DictionaryObject(
            {
                generic.pdf_name("/Type"): generic.pdf_name("/Font"),
                generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
                generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
            }
        )
        resources = generic.DictionaryObject(
            {generic.pdf_name("/Font"): generic.DictionaryObject({generic.pdf_name("/FX"): font})}
        )
        stream = generic.StreamObject(stream_data=b"BT /FX 30 Tf 60 400 Td (NOT DELIVERED) Tj ET")
        writer.add_stream_to_page(0, writer.add_object(stream), resources=resources)

    forged = _update(sealed.pdf, forge)
    path = tmp_path / "forged.pdf"
    path.write_bytes(forged)
    assert "NOT DELIVERED" in poppler("pdftotext", path, "-").stdout
    found = failures(forged, root)
    assert any("changed after it was sealed" in f for f in found["changes after sealing"])
    assert "whole file signed" in found


def _replace_attachment(name: str, content: bytes) -> Change:
    def change(writer: IncrementalPdfFileWriter) -> None:
        names = writer.root["/Names"]["/EmbeddedFiles"]["/Names"]
        for i in range(0, len(names), 2):
            if str(names[i]) == name:
                spec_ref = names.raw_get(i + 1)
                stream = generic.StreamObject(
                    {generic.pdf_name("/Type"): generic.pdf_name("/EmbeddedFile")},
                    stream_data=content,
                )
                spec_ref.get_object()["/EF"][generic.pdf_name("/F")] = writer.add_object(stream)
                writer.mark_update(spec_ref)
                return
        raise AssertionError(f"{name} is not attached")

    return change


def test_a_re_embedded_altered_bundle_is_named(sealed: Sealed, root: x509.Certificate) -> None:
    event = sealed.data.events[-1]
    assert event.bundle is not None
    bundle = json.loads(json.dumps(event.bundle))
    bundle["record"]["details"]["smtp"]["reply"] = "250 2.0.0 Ok: queued as FORGED"
    name = f"evidence-03-{event.event}-{event.record_id}.json"
    forged = _update(sealed.pdf, _replace_attachment(name, json.dumps(bundle).encode()))
    found = failures(forged, root)
    assert any(name in f and "altered" in f for f in found["attachment"])
    assert any(name in f and "the record was altered" in f for f in found["evidence"])
    assert "changes after sealing" in found


def test_a_re_embedded_altered_message_fails_its_digest(
    sealed: Sealed, root: x509.Certificate
) -> None:
    eml = sealed.data.eml.replace(b"contract attached", b"contract NOT attached")
    found = failures(_update(sealed.pdf, _replace_attachment("original.eml", eml)), root)
    assert any("the message was altered" in f for f in found["message digest"])


def test_a_message_that_is_not_the_one_recorded_fails_even_when_sealed(
    sealed: Sealed, identities: LocalIdentities, timestamper: TimeStamper, root: x509.Certificate
) -> None:
    """The seal proves who issued the PDF, not that its message is the recorded one."""
    wrong = dataclasses.replace(sealed.data, eml=sealed.data.eml + b"\r\nP.S. added later\r\n")
    pdf = seal_pdf(
        render_certificate(wrong),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[root],
        reason="test",
    )
    found = failures(pdf, root)
    assert found.keys() == {"message digest", "evidence"}
    assert all("is not the attached message's" in f for f in found["evidence"][:2])


def test_a_certificate_with_a_bundle_of_another_communication_fails(
    ledger: Sealpost,
    tenant: str,
    sealed: Sealed,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
) -> None:
    other = make_certificate_data(ledger, tenant, Scenario())
    mixed = dataclasses.replace(sealed.data, events=(*sealed.data.events, other.events[-1]))
    pdf = seal_pdf(
        render_certificate(mixed),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[root],
        reason="test",
    )
    found = failures(pdf, root)
    assert any("not this communication" in f for f in found["evidence"])


def test_an_unsealed_event_is_stated_but_not_claimed_as_proven(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
    root: x509.Certificate,
) -> None:
    data = make_certificate_data(ledger, tenant, Scenario(unsealed_last=True))
    pdf = seal_pdf(
        render_certificate(data),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[root],
        reason="test",
    )
    report = verify_certificate_pdf(pdf, trust_roots=[root])
    assert report.ok, report.failures
    assert "not yet sealed in the ledger" in report.statement()


def test_an_unsealed_pdf_has_no_seal(sealed: Sealed, root: x509.Certificate) -> None:
    found = failures(render_certificate(sealed.data), root)
    assert found["seal"] == ["file: the PDF carries no seal signature"]


@pytest.mark.parametrize(
    "data", [b"", b"hello", b'{"format": "sealpost-evidence-bundle"}', b"\x89PNG\r\n\x1a\n"]
)
def test_not_a_pdf_is_invalid_input_with_a_clear_message(data: bytes) -> None:
    with pytest.raises(NotACertificate, match="not a PDF") as caught:
        verify_certificate_pdf(data)
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 422


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_a_truncated_pdf_fails_without_crashing(
    sealed: Sealed, root: x509.Certificate, keep: float
) -> None:
    report = verify_certificate_pdf(sealed.pdf[: int(len(sealed.pdf) * keep)], trust_roots=[root])
    assert not report.ok
    assert report.statement().startswith("This certificate proves nothing")


def _short_lived_seal(keys_dir: Path, seconds: float) -> SigningIdentity:
    """A seal certificate from the local root that expires ``seconds`` from now."""
    root_key = serialization.load_pem_private_key(
        (keys_dir / "root-ca.key").read_bytes(), password=None
    )
    root = x509.load_pem_x509_certificate((keys_dir / "root-ca.pem").read_bytes())
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    usage = dict.fromkeys(
        ("key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign"), False
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short-lived Seal")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(seconds=seconds))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    return SigningIdentity(private_key=key, certificate=cert, chain=(root,))


def test_the_document_timestamp_keeps_the_seal_valid_after_its_certificate_expires(
    sealed: Sealed, keys_dir: Path, timestamper: TimeStamper, root: x509.Certificate
) -> None:
    seal = _short_lived_seal(keys_dir, seconds=2)
    pdfs = {
        lta: seal_pdf(
            render_certificate(sealed.data),
            seal=seal,
            timestamper=timestamper,
            trust_roots=[root],
            reason="test",
            document_timestamp=lta,
        )
        for lta in (True, False)
    }
    time.sleep(
        max(0.0, (seal.certificate.not_valid_after_utc - datetime.now(UTC)).total_seconds()) + 1.5
    )
    report = verify_certificate_pdf(pdfs[True], trust_roots=[root])
    assert report.ok, report.failures
    found = failures(pdfs[False], root)
    assert "seal certificate" in found  # B-LT alone: the expired seal no longer validates now


def test_each_bundle_has_its_etsi_view_beside_it(sealed: Sealed, root: x509.Certificate) -> None:
    report = verify_certificate_pdf(sealed.pdf, trust_roots=[root])
    assert report.ok, report.failures
    validator = jsonschema.Draft202012Validator(etsi_view_schema())
    for n, event in enumerate(sealed.data.events, start=1):
        view = json.loads(report.attachments[f"etsi-{n:02d}-{event.event}-{event.record_id}.json"])
        validator.validate(view)
        assert view["evidenceIdentifier"] == event.record_id
        assert view["erdsEventId"] == event.event_uri
    views = [c for c in report.checks if c.name == "etsi view"]
    assert len(views) == len(sealed.data.events) and all(c.ok for c in views)


def test_an_altered_etsi_view_is_named(sealed: Sealed, root: x509.Certificate) -> None:
    event = sealed.data.events[0]
    name = f"etsi-01-{event.event}-{event.record_id}.json"
    view = json.loads(verify_certificate_pdf(sealed.pdf, trust_roots=[root]).attachments[name])
    view["eventTime"] = "2020-01-01T00:00:00.000000Z"
    forged = _update(sealed.pdf, _replace_attachment(name, json.dumps(view).encode()))
    found = failures(forged, root)
    assert any(name in f and "not the view of its evidence bundle" in f for f in found["etsi view"])
