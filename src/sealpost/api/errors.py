"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error answer of the API has ``type`` (``urn:sealpost:problem:<code>``), ``title`` (the
same for every occurrence of a kind), ``status``, ``detail`` (this occurrence, in words a
developer can act on), and the structured fields the error carries (``field``, ``reason``,
``attempts_left``, ``errors`` for a request that fails validation...).  ``error`` (the code)
and ``message`` (the detail) are kept as members for clients written against Sealpost 0.1.
``docs/api.md`` lists the codes.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sealpost.db.full import StorageFull, is_storage_full
from sealpost.errors import PROBLEM_TYPE_PREFIX, SealpostError
from sealpost.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: ("bad_request", "The request is malformed"),
    401: ("unauthorized", "Missing or invalid credentials"),
    404: ("not_found", "No such resource"),
    405: ("method_not_allowed", "Method not allowed on this resource"),
    409: ("conflict", "The resource's state does not allow this"),
    410: ("gone", "No longer available"),
    413: ("too_large", "The request body is too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("invalid_input", "The request cannot be processed as sent"),
    423: ("locked", "Locked"),
    429: ("too_many_requests", "Too many requests"),
    503: ("unavailable", "A dependency is unavailable; retry later"),
}


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """One problem document; ``code``/``title`` default to the status's generic ones."""
    generic_code, generic_title = _HTTP_CODES.get(status, ("error", "Error"))
    code = code or generic_code
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title or generic_title,
        "status": status,
        "detail": detail,
        **extensions,
        "error": code,
        "message": detail,
    }
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_JSON)


def _internal(incident: str) -> JSONResponse:
    return problem(
        500,
        f"an internal error occurred; incident {incident} is in the server's log",
        code="internal_error",
        title="Internal error",
    )


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def error_response(exc: SealpostError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem document of ``exc`` (also for answers made before the app runs: the
    request guard's 401, 413 and 429), with ``headers`` added."""
    extra: dict[str, str] = {}
    if exc.status == 401:
        extra["WWW-Authenticate"] = "Bearer"
    retry_after = getattr(exc, "retry_after", None)
    if exc.status in (429, 503, 507) or exc.code == "not_sealed_yet":
        extra["Retry-After"] = str(int(retry_after or 1))
    detail = exc.message
    if exc.status >= 500:
        incident = uuid.uuid4().hex[:12]
        log.error("api.error", error=exc.message, code=exc.code, incident=incident)
        if exc.status not in (503, 507):  # a fault's text (paths, library errors) stays in logs
            detail = f"{exc.title}; incident {incident} is in the server's log"
    return problem(
        exc.status,
        detail,
        code=exc.code,
        title=exc.title,
        headers={**extra, **(headers or {})} or None,
        **exc.extensions(),
    )


def _storage_full(incident: str, headers: dict[str, str] | None) -> JSONResponse:
    return problem(
        507,
        f"storage is full: nothing of this request was kept; retry later (incident {incident})",
        code=StorageFull.code,
        title=StorageFull.title,
        headers={"Retry-After": str(StorageFull.retry_after), **(headers or {})},
    )


def database_error_response(exc: DBAPIError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The database went away mid-request (restart, failover): retry, nothing was kept.
    Or its disk is full (``db/full.py``): 507, not a database outage."""
    incident = uuid.uuid4().hex[:12]
    if is_storage_full(exc):
        log.error("api.storage_full", error=repr(exc.orig), incident=incident)
        return _storage_full(incident, headers)
    log.error("api.database_error", error=repr(exc.orig), incident=incident)
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return problem(
            503,
            f"the database is unavailable; retry shortly (incident {incident})",
            headers={"Retry-After": "1", **(headers or {})},
        )
    response = _internal(incident)
    response.headers.update(headers or {})
    return response


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem document."""

    @app.exception_handler(SealpostError)
    async def sealpost_error(_request: Request, exc: SealpostError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(DBAPIError)
    async def database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        return database_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        if is_storage_full(exc):  # ENOSPC writing a file: the operator frees space
            log.error("api.storage_full", error=repr(exc), incident=incident)
            return _storage_full(incident, None)
        log.error("api.unexpected_error", error=repr(exc), incident=incident, exc_info=exc)
        return _internal(incident)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _location(e.get("loc", ())), "reason": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "invalid request"
        if malformed:
            return problem(400, f"the body is not valid JSON ({detail})", errors=errors)
        return problem(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return problem(exc.status_code, detail, headers=dict(exc.headers or {}) or None)
