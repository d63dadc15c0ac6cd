"""What pyHanko and the TSA raise, as Sealpost errors: one mapping for every PAdES operation.

Sealing a certificate (:func:`sealpost.certificates.seal.seal_pdf`), a signer's signature and a
document timestamp (:mod:`sealpost.certificates.pades.signing`) all call pyHanko, which raises
its own exceptions and lets those of pyhanko-certvalidator and of our timestamp client through.
:func:`pyhanko_errors` maps them, for each caller, to its own pair of errors: the permanent
failure (a 500: key, certificate, TSA refusal, PDF), and the transient one (a 503: the TSA is
unreachable, retry later).  A PAdES signature is never produced without its signature
timestamp (PAdES B-T, ETSI EN 319 142-1), so an outage fails the whole operation and nothing is
returned.

Errors of the signatures toolkit::

    SealpostError
    ├── InvalidInput (422)              a PDF that cannot be parsed, a bad field or appearance
    ├── Conflict (409)                  the field is signed already
    └── SignatureError (500)            the signature was not applied; nothing was produced
        └── SignatureUnavailable (503)  the TSA is unreachable: retry later

(The certificate seal has the same pair: :class:`~sealpost.certificates.errors.SealError` and
:class:`~sealpost.certificates.errors.SealUnavailable`.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyhanko.pdf_utils.layout import LayoutError
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps import TimestampRequestError
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

from sealpost.errors import SealpostError, ServiceUnavailable
from sealpost.ledger.timestamps import TimestampError, TimestampUnavailable

__all__ = ["SignatureError", "SignatureUnavailable", "pyhanko_errors"]


class SignatureError(SealpostError):
    """The signature (or document timestamp) was not applied; no PDF was produced."""

    code = "signature_failed"
    title = "The PDF signature could not be applied"

    retryable: bool = False


class SignatureUnavailable(SignatureError, ServiceUnavailable):
    """The timestamp authority is unreachable: a signature is never produced without its
    timestamp, so the caller retries the whole signature later."""

    status = 503
    code = "signature_unavailable"
    title = "The timestamp authority is unreachable; the signature will be retried"
    retryable = True


@contextlib.contextmanager
def pyhanko_errors(
    what: str,
    *,
    failed: type[SealpostError] = SignatureError,
    unavailable: type[SealpostError] = SignatureUnavailable,
) -> Iterator[None]:
    """Raise ``unavailable`` for a TSA outage and ``failed`` for anything else pyHanko, the
    TSA or the path validation raise inside the block; ``what`` says what did not happen
    (e.g. ``"the signature was not applied"``) and starts each message.

    ``unavailable`` should be a :class:`~sealpost.errors.ServiceUnavailable` (503, retryable)
    and ``failed`` its permanent counterpart; the original exception is the ``__cause__``.
    """
    try:
        yield
    except TimestampUnavailable as exc:
        raise unavailable(
            f"the timestamp authority is unreachable: {what}; it will be retried ({exc.message})"
        ) from exc
    except TimestampError as exc:
        raise failed(f"{what}: the timestamp failed: {exc.message}") from exc
    except TimestampRequestError as exc:
        raise failed(f"{what}: the TSA refused: {exc}") from exc
    except (PathBuildingError, PathValidationError, AssertionError) as exc:
        # pyhanko-certvalidator 0.33 asserts (rather than skips) when a root with the same
        # name but another key type is tried as the issuer: a path that does not validate.
        raise failed(
            f"{what}: the seal or TSA certificate does not validate against the configured "
            f"roots ({exc})"
        ) from exc
    except SigningError as exc:
        cause = exc.__cause__
        if isinstance(cause, PathBuildingError | PathValidationError):  # checked before signing
            raise failed(
                f"{what}: the seal certificate does not validate against the configured roots "
                f"({cause})"
            ) from exc
        raise failed(f"{what}: {exc}") from exc
    except (PdfError, LayoutError) as exc:
        raise failed(f"{what}: {exc}") from exc
