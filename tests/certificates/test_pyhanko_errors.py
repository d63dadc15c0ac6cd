"""One mapping of pyHanko's, certvalidator's and the TSA's exceptions to Sealpost errors, for
the certificate seal and for the signers' signatures alike."""

from __future__ import annotations

import pytest
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import TimestampRequestError
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

from sealpost.certificates.errors import SealError, SealUnavailable
from sealpost.certificates.pades.errors import (
    SignatureError,
    SignatureUnavailable,
    pyhanko_errors,
)
from sealpost.errors import SealpostError, ServiceUnavailable
from sealpost.ledger.timestamps import TimestampError, TimestampUnavailable


def _path_validation_error(message: str) -> PathValidationError:
    """Without the validation state certvalidator builds it from (real ones: test_seal.py)."""
    exc = PathValidationError.__new__(PathValidationError)
    Exception.__init__(exc, message)
    return exc


PAIRS = [(SealError, SealUnavailable), (SignatureError, SignatureUnavailable)]
"""(failed, unavailable): the seal's pair (``seal_pdf``) and the signatures' pair."""


def _mapped(
    exc: BaseException, failed: type[SealpostError], unavailable: type[SealpostError]
) -> SealpostError:
    with (
        pytest.raises(SealpostError) as caught,
        pyhanko_errors("it was not done", failed=failed, unavailable=unavailable),
    ):
        raise exc
    assert caught.value.__cause__ is exc
    return caught.value


@pytest.mark.parametrize(("failed", "unavailable"), PAIRS)
def test_a_tsa_outage_is_a_retryable_503(
    failed: type[SealpostError], unavailable: type[SealpostError]
) -> None:
    outage = TimestampUnavailable("TSA http://127.0.0.1:9/tsa unreachable: ConnectError")
    error = _mapped(outage, failed, unavailable)
    assert type(error) is unavailable
    assert isinstance(error, failed) and isinstance(error, ServiceUnavailable)
    assert error.status == 503 and getattr(error, "retryable", None) is True
    assert error.message == (
        "the timestamp authority is unreachable: it was not done; it will be retried "
        "(TSA http://127.0.0.1:9/tsa unreachable: ConnectError)"
    )


@pytest.mark.parametrize(("failed", "unavailable"), PAIRS)
@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (_path_validation_error("the seal certificate expired"), "does not validate"),
        (PathBuildingError("no issuer"), "does not validate"),
        (AssertionError("certvalidator: key type mismatch"), "does not validate"),
        (SigningError("cannot sign ecdsa with a RSAPrivateKey"), "cannot sign ecdsa"),
        (TimestampRequestError("HTTP 403"), "the TSA refused"),
        (TimestampError("bad reply", reason="bad-response"), "the timestamp failed"),
        (PdfError("broken xref"), "broken xref"),
    ],
    ids=["expired", "no-path", "key-type", "bad-key", "tsa-refused", "bad-token", "pdf"],
)
def test_a_bad_key_certificate_or_file_is_a_permanent_500(
    failed: type[SealpostError],
    unavailable: type[SealpostError],
    exc: BaseException,
    says: str,
) -> None:
    error = _mapped(exc, failed, unavailable)
    assert type(error) is failed and not isinstance(error, ServiceUnavailable)
    assert error.status == 500 and getattr(error, "retryable", None) is False
    assert error.message.startswith("it was not done: ") and says in error.message


def test_a_seal_key_refused_before_signing_names_the_seal_certificate() -> None:
    """pyHanko validates the signer's path before signing and wraps the failure."""
    signing = SigningError("the signer's certificate could not be validated")
    signing.__cause__ = _path_validation_error("not trusted")
    error = _mapped(signing, SealError, SealUnavailable)
    assert type(error) is SealError and error.status == 500
    assert "the seal certificate does not validate against the configured roots" in error.message


def test_anything_else_passes_through_unchanged() -> None:
    with pytest.raises(KeyError), pyhanko_errors("it was not done"):
        raise KeyError("not pyHanko's")
