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
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sealpost.db.full import StorageFull, is_storage_full
from sealpost.errors import PROBLEM_TYPE_PREFIX, InvalidInput, NotFound, SealpostError
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


def _location(error: dict[str, Any]) -> str:
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":
        return "body"  # its loc is ("body", the offset of the error)
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
        # a fault's text (paths, library errors, internal endpoints) stays in the logs; a
        # 503 or 507 says what to wait for, unless its text names the infrastructure
        if exc.status not in (503, 507) or getattr(exc, "detail_is_internal", False):
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


def _reason(error: dict[str, Any]) -> str:
    """Pydantic's message, without its "Value error, " prefix for our own validators."""
    cause = (error.get("ctx") or {}).get("error")
    if error.get("type") == "value_error" and isinstance(cause, ValueError):
        return str(cause)
    return str(error.get("msg", "invalid"))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path: ``Allow`` of a 405 (RFC 9110 §15.5.6).
    Starlette names only the first route whose path matched; a path that two routes match
    (``/v1/events/replay``: POST, and GET of ``/v1/events/{event_id}``) then told only half.
    Asked of the router itself, method by method, so included routers answer too."""
    methods = set()
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return ", ".join(sorted(methods))


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
        errors = [{"field": _location(e), "reason": _reason(e)} for e in exc.errors()]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors) or "invalid request"
        if malformed:
            return problem(400, f"the body is not valid JSON ({detail})", errors=errors)
        return problem(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return problem(exc.status_code, detail, headers=headers or None)


# -- the problems in the OpenAPI document --------------------------------------------------------


class FieldProblem(BaseModel):
    field: str = Field(description="Where, e.g. `signers.0.name` or `status`.")
    reason: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every error answer of the API."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(
        pattern=r"^urn:sealpost:problem:[a-z0-9_]+$",
        description="`urn:sealpost:problem:<code>`: the kind, stable (docs/api.md lists them).",
    )
    title: str = Field(description="The same short summary for every occurrence of the kind.")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="This occurrence, in words a developer can act on.")
    error: str = Field(description="The code again, for clients written against Sealpost 0.1.")
    message: str = Field(description="The detail again, for clients written against 0.1.")
    errors: list[FieldProblem] | None = Field(
        None, description="A request that breaks the schema: each field and why."
    )


_PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_HEADERS = {
    401: {"WWW-Authenticate": "Bearer"},
    429: {"Retry-After": "Seconds to wait before trying again."},
    503: {"Retry-After": "Seconds to wait before trying again."},
    507: {"Retry-After": "Seconds to wait before trying again."},
}
BODY_STATUSES = (400, 413)
"""What an operation with a request body may answer before it reads a field: a JSON body
that is not JSON (400), a body larger than its limit (413)."""


def problem_responses(*kinds: type[SealpostError] | int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of an operation (or a router) that may raise these errors:
    each status once, as a problem under ``application/problem+json``, its description the
    titles and codes of the kinds that answer it.  A bare status stands for an answer no
    :class:`SealpostError` gives (400, a body that is not JSON; 413 and 429 of the limits)."""
    texts: dict[int, list[str]] = {}
    for kind in kinds:
        if isinstance(kind, int):
            status, (code, title) = kind, _HTTP_CODES.get(kind, ("error", "Error"))
        else:
            status, code, title = kind.status, kind.code, kind.title
        line = f"{title} (`{code}`)"
        if line not in texts.setdefault(status, []):
            texts[status].append(line)
    out: dict[int | str, dict[str, Any]] = {}
    for status, lines in sorted(texts.items()):
        response: dict[str, Any] = {"description": "; ".join(lines), "content": _PROBLEM_CONTENT}
        if status in _HEADERS:
            response["headers"] = {
                name: {"description": text, "required": True, "schema": {"type": "string"}}
                for name, text in _HEADERS[status].items()
            }
        out[status] = response
    return out


def document(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document say what the API answers: FastAPI's own 422 (an
    ``HTTPValidationError`` list that the API never sends) becomes the problem the
    validation handler sends; each operation with a path parameter documents 404, and each
    with a request body 400 and 413 (see :data:`BODY_STATUSES`)."""

    generate = app.openapi  # FastAPI's, which caches its result in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problems_only(generate())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _problems_only(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    validation = problem_responses(InvalidInput)[422]
    body = problem_responses(*BODY_STATUSES)
    unknown = problem_responses(NotFound)[404]
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            documented = responses.get("422", {}).get("content", {})
            if any("HTTPValidationError" in str(c) for c in documented.values()):
                responses["422"] = validation
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                responses.setdefault("404", unknown)  # an id it does not know, or another's
            content = operation.get("requestBody", {}).get("content", {})
            for status, response in body.items():
                if content and (status != 400 or "application/json" in content):
                    responses.setdefault(str(status), response)
