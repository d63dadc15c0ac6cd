"""Sealing: the PDF validates in pyHanko and in poppler's pdfsig, with EC and RSA keys."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from cryptography import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore

from sealpost.certificates import (
    SealError,
    SealUnavailable,
    render_certificate,
    seal_pdf,
    verify_certificate_pdf,
)
from sealpost.certificates.seal import validation_context
from sealpost.errors import ServiceUnavailable
from sealpost.ledger.timestamps import EmbeddedTimeStamper, HttpTimeStamper, TimeStamper
from sealpost.pki.keys import LocalIdentities, init_keys, load_local_identities
from sealpost.pki.tsa import EmbeddedTSA
from tests.certificates.support import Sealed, poppler


def test_pyhanko_validates_the_seal_its_timestamp_and_the_document_timestamp(
    sealed: Sealed, root: x509.Certificate
) -> None:
    reader = PdfFileReader(io.BytesIO(sealed.pdf))
    seal, archive = reader.embedded_signatures
    context = validation_context([root])
    status = validate_pdf_signature(seal, context, context)
    assert status.bottom_line, status.pretty_print_details()
    assert status.intact and status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert status.signing_cert.subject.native["common_name"] == "Sealpost Evidence Seal"
    stamp = validate_pdf_timestamp(archive, validation_context=validation_context([root]))
    assert stamp.intact and stamp.valid and stamp.trusted
    assert archive.sig_object["/SubFilter"] == "/ETSI.RFC3161"
    assert seal.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    dss = DocumentSecurityStore.read_dss(reader)
    names = {c.subject.native["common_name"] for c in dss.load_certs()}
    assert {"Sealpost Evidence Seal", "Sealpost Local Root CA"} <= names
    assert "Sealpost Time-Stamping Authority" in names


def test_pdfsig_says_the_seal_is_valid(sealed: Sealed, tmp_path: Path) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(sealed.pdf)
    result = poppler("pdfsig", path)
    assert result.returncode == 0, result.stdout + result.stderr
    seal = result.stdout.split("Signature #2")[0]
    assert "Signature Field Name: SealpostSeal" in seal
    assert "Signature is Valid" in seal
    assert "ETSI.CAdES.detached" in seal
    # The local CA is not in NSS's trust store; pyHanko checks the chain against it instead.
    assert any(
        phrase in seal
        for phrase in ("issuer isn't Trusted", "Certificate issuer is unknown", "is Trusted")
    )
    assert "SealpostArchiveTimestamp" in result.stdout
    assert "Total document signed" in result.stdout  # the document timestamp covers all


def test_without_the_document_timestamp_pdfsig_sees_one_seal_over_the_whole_file(
    sealed: Sealed, identities: LocalIdentities, timestamper: TimeStamper, tmp_path: Path
) -> None:
    pdf = seal_pdf(
        render_certificate(sealed.data),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="Evidence certificate",
        document_timestamp=False,
    )
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdfsig", path)
    assert "Signature is Valid" in result.stdout and "Signature #2" not in result.stdout
    assert "Total document signed" in result.stdout
    report = verify_certificate_pdf(pdf, trust_roots=[identities.root])
    assert report.ok, report.failures
    assert report.archived_at is None


@pytest.fixture(scope="module")
def rsa_identities(tmp_path_factory: pytest.TempPathFactory) -> LocalIdentities:
    directory = tmp_path_factory.mktemp("rsa") / "keys"
    init_keys(directory, key_type="rsa-3072")
    return load_local_identities(directory)


def test_an_rsa_seal_and_an_rsa_tsa_work_too(
    sealed: Sealed, rsa_identities: LocalIdentities, root: x509.Certificate, tmp_path: Path
) -> None:
    rsa = rsa_identities
    pdf = seal_pdf(
        render_certificate(sealed.data),
        seal=rsa.seal,
        timestamper=EmbeddedTimeStamper(EmbeddedTSA(rsa.tsa)),
        trust_roots=[rsa.root],
        reason="Evidence certificate",
    )
    reader = PdfFileReader(io.BytesIO(pdf))
    status = validate_pdf_signature(reader.embedded_signatures[0], validation_context([rsa.root]))
    assert status.bottom_line and status.signing_cert.public_key.algorithm == "rsa"
    # The bundles inside were sealed by the ledger's EC key: trust both roots.
    report = verify_certificate_pdf(pdf, trust_roots=[rsa.root, root])
    assert report.ok, report.failures
    path = tmp_path / "rsa.pdf"
    path.write_bytes(pdf)
    assert "Signature is Valid" in poppler("pdfsig", path).stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_tsa_is_a_retryable_error_and_no_pdf(
    sealed: Sealed, identities: LocalIdentities
) -> None:
    down = HttpTimeStamper(f"http://127.0.0.1:{_closed_port()}/tsa", timeout=2)
    with down, pytest.raises(SealError) as caught:
        seal_pdf(
            render_certificate(sealed.data),
            seal=identities.seal,
            timestamper=down,
            trust_roots=[identities.root],
            reason="Evidence certificate",
        )
    error = caught.value
    assert isinstance(error, SealUnavailable) and isinstance(error, ServiceUnavailable)
    assert error.status == 503 and error.retryable
    assert "unreachable" in error.message


def test_a_seal_that_does_not_chain_to_the_given_roots_is_refused(
    sealed: Sealed, identities: LocalIdentities, rsa_identities: LocalIdentities
) -> None:
    with pytest.raises(SealError, match="does not validate") as caught:
        seal_pdf(
            render_certificate(sealed.data),
            seal=identities.seal,
            timestamper=EmbeddedTimeStamper(EmbeddedTSA(identities.tsa)),
            trust_roots=[rsa_identities.root],
            reason="Evidence certificate",
        )
    assert not caught.value.retryable
