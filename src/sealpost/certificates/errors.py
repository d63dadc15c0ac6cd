"""Errors of the certificate layer::

    SealpostError
    ├── InvalidInput (422)
    │   └── NotACertificate (422)       the bytes given to the verifier are not a PDF
    └── SealError (500)                 the PDF could not be sealed; nothing was produced
        └── SealUnavailable (503)       the TSA could not be reached: retry later

A failed seal never yields a PDF: a certificate without its timestamp would look sealed to a
reader but prove less, so the caller retries the whole issuance instead.
"""

from __future__ import annotations

from sealpost.errors import InvalidInput, SealpostError, ServiceUnavailable


class NotACertificate(InvalidInput):
    """Input that is not a PDF at all (wrong file, truncated upload)."""

    code = "not_a_certificate"
    title = "Not an evidence certificate"


class SealError(SealpostError):
    """Sealing failed (key, certificate or TSA problem); no PDF was produced."""

    code = "seal_failed"
    title = "Sealing failed"

    retryable: bool = False


class SealUnavailable(SealError, ServiceUnavailable):
    """The timestamping authority is down or timed out: a transient outage, retry later."""

    code = "seal_unavailable"
    title = "The timestamping authority is unavailable; retry later"

    status = 503
    retryable = True
