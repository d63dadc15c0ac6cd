"""The one base error of Sealpost.

Every expected failure is a :class:`SealpostError` with an HTTP-like ``status`` so that the
API turns it into a 4xx with a clear message instead of a 500.  Each domain subclasses it
with structured fields (see ``ledger/errors.py``, ``pki/errors.py``)::

    SealpostError (status 500)
    ├── InvalidInput (422)          malformed request, bundle, PDF, ...
    ├── Unauthorized (401)          missing or wrong credential; never says which
    ├── NotFound (404)              unknown id, or an id of another tenant
    ├── Conflict (409)              a state that forbids the action
    ├── Gone (410)                  existed, but was purged (retention)
    └── ServiceUnavailable (503)    a dependency (TSA, database) is down; retry later
"""

from __future__ import annotations


class SealpostError(Exception):
    """Base of every error Sealpost raises on purpose."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(SealpostError):
    status = 422


class Unauthorized(SealpostError):
    status = 401


class NotFound(SealpostError):
    status = 404


class Conflict(SealpostError):
    status = 409


class Gone(SealpostError):
    status = 410


class ServiceUnavailable(SealpostError):
    status = 503
