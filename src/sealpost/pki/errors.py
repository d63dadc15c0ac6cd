"""Errors of the PKI layer::

SealpostError
└── PkiError (500)                  misconfigured PKI, a bug, not the caller's fault
    ├── KeyMaterialError (500)      a key/certificate file is missing, locked or inconsistent
    └── TimestampRejected (422)     the embedded TSA refused a request (RFC 3161 §2.4.2)
"""

from __future__ import annotations

from pathlib import Path

from sealpost.errors import SealpostError


class PkiError(SealpostError):
    """Base of every PKI failure."""

    code = "pki_error"
    title = "Key or certificate problem"


class KeyMaterialError(PkiError):
    """A key or certificate file cannot be used; ``path`` names the file to fix.

    Status 500: the operator's configuration is wrong, not the request.
    """

    code = "key_material"
    title = "A key or certificate file cannot be used"

    status = 500

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(f"{message} ({path})" if path is not None else message)
        self.path = path


class TimestampRejected(PkiError):
    """The embedded TSA answered ``rejection``; ``fail_info`` holds the PKIFailureInfo bit names."""

    code = "timestamp_rejected"
    title = "The timestamping authority rejected the request"
    problem_fields = ("fail_info",)

    status = 422

    def __init__(self, message: str, *, fail_info: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fail_info = fail_info
