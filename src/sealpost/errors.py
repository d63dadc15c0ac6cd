"""The one base error of Sealpost.

Every expected failure is a :class:`SealpostError` with an HTTP-like ``status`` so that the
API turns it into a 4xx with a clear message instead of a 500, as an RFC 9457 problem
(``application/problem+json``, ``api/errors.py``): ``type`` is ``urn:sealpost:problem:<code>``,
and the structured fields an error carries (``field``, ``attempts_left``...) become members of
the problem.  Each domain subclasses it with structured fields (see ``ledger/errors.py``,
``pki/errors.py``, ``signatures/model.py``)::

    SealpostError (status 500)
    ├── InvalidInput (422)          malformed request, bundle, PDF, ...
    ├── Unauthorized (401)          missing or wrong credential; never says which
    ├── NotFound (404)              unknown id, or an id of another tenant
    ├── Conflict (409)              a state that forbids the action
    ├── Gone (410)                  existed, but was purged (retention)
    ├── ContentTooLarge (413)       a request body over its route's limit; ``max_bytes``
    ├── Locked (423)                too many wrong codes; a new link unlocks
    ├── TooManyRequests (429)       slow down
    │   └── RateLimited             over a rate limit; ``retry_after`` seconds
    ├── ServiceUnavailable (503)    a dependency (TSA, database) is down; retry later
    └── StorageFull (507)           the disk is full (``db/full.py``); retry later
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "urn:sealpost:problem:"
RESERVED_MEMBERS = frozenset(
    {"type", "title", "status", "detail", "instance", "error", "message", "headers", "code"}
)
"""Members of a problem document that an error's own fields may not take."""


class SealpostError(Exception):
    """Base of every error Sealpost raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "error"
    """Stable, machine-readable kind: the problem's ``type`` is its URN."""
    title: ClassVar[str] = "Internal error"
    """The same short summary for every occurrence of this kind (RFC 9457 §3.1.3)."""
    problem_fields: ClassVar[tuple[str, ...]] = ()
    """The instance attributes a client may see, as members of the problem document; an
    allow-list, so that a field added for logs or internal use never leaks by default."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        clash = set(cls.problem_fields) & RESERVED_MEMBERS
        if clash:
            raise TypeError(f"{cls.__name__}.problem_fields uses reserved members {clash}")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.code

    def extensions(self) -> dict[str, Any]:
        """The structured fields this error carries (``problem_fields``), as JSON values;
        they become members of the problem document."""
        out: dict[str, Any] = {}
        for key in self.problem_fields:
            value = getattr(self, key, None)
            if value is None or isinstance(value, str | int | float | bool):
                out[key] = value
            elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                out[key] = list(value)
        return out


class InvalidInput(SealpostError):
    status = 422
    code = "invalid_input"
    title = "The request cannot be processed as sent"


class Unauthorized(SealpostError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid credentials"


class Forbidden(SealpostError):
    """Authenticated, but this key's role may not do this (RFC 9110 §15.5.4)."""

    status = 403
    code = "forbidden"
    title = "This key's role does not allow this"


class NotFound(SealpostError):
    status = 404
    code = "not_found"
    title = "No such resource"


class Conflict(SealpostError):
    status = 409
    code = "conflict"
    title = "The resource's state does not allow this"


class Gone(SealpostError):
    status = 410
    code = "gone"
    title = "No longer available"


class Locked(SealpostError):
    status = 423
    code = "locked"
    title = "Locked"


class TooManyRequests(SealpostError):
    status = 429
    code = "too_many_requests"
    title = "Too many requests"


class ServiceUnavailable(SealpostError):
    status = 503
    code = "unavailable"
    title = "A dependency is unavailable; retry later"


class ContentTooLarge(SealpostError):
    """A request body over its route's limit (RFC 9110 §15.5.14), refused before the rest of
    it is read."""

    status = 413
    code = "too_large"
    title = "The request body is too large"
    problem_fields = ("max_bytes",)

    def __init__(self, message: str, max_bytes: int) -> None:
        super().__init__(message)
        self.max_bytes = max_bytes


class RateLimited(TooManyRequests):
    """Over a rate limit (per tenant or per client address): retry after ``retry_after``
    seconds, also sent as ``Retry-After`` (RFC 6585 §4)."""

    code = "rate_limited"
    title = "Rate limit exceeded; slow down"
    problem_fields = ("retry_after",)

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
