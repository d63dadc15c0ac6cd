"""The FastAPI application factory.

``create_app`` takes a built :class:`Sealpost`; the lifespan starts and stops its background
work (the sequencer) when ``start_background`` is true.  Expected failures
(:class:`SealpostError`) become JSON errors with their status, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

import sealpost
from sealpost.api import communications, events, ledger, signatures, webhooks
from sealpost.api.auth import SealpostDep
from sealpost.api.schemas import EventsHealth, Health, LedgerHealth
from sealpost.app import Sealpost
from sealpost.errors import SealpostError
from sealpost.ledger.errors import NotSealedYet
from sealpost.logging import get_logger
from sealpost.web import signing as signing_page

log = get_logger(__name__)

_ERROR_NAMES = {
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    410: "gone",
    415: "unsupported_media_type",
    422: "invalid_input",
    423: "locked",
    429: "too_many_requests",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = _ERROR_NAMES.get(status, "unavailable" if status == 503 else "error")
    return JSONResponse({"error": kind, "message": message}, status, headers=headers)


def _add_api_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` with its script and style served from here (the fastapi-offline
    package ships them), not from a CDN: the API docs work on a closed network.  The page uses
    relative URLs (right under any root path), and its CSP allows this origin only, plus
    Swagger UI's one inline script by its hash."""
    app.mount("/docs/assets", StaticFiles(directory=str(files("fastapi_offline") / "static")))
    page = get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{app.title} API",
        swagger_js_url="docs/assets/swagger-ui-bundle.js",
        swagger_css_url="docs/assets/swagger-ui.css",
        swagger_favicon_url="docs/assets/favicon.png",
    ).body
    inline = re.findall(rb"<script>(.*?)</script>", bytes(page), re.DOTALL)
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in inline
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'self'{hashes}; style-src 'self'; "
            "img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)


def create_app(sp: Sealpost, *, start_background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_background:
            sp.start_background()
        try:
            yield
        finally:
            if start_background:
                sp.stop_background()

    app = FastAPI(
        title="Sealpost",
        version=sealpost.__version__,
        description="Certified communications: sealed, timestamped evidence of every step.",
        lifespan=lifespan,
        docs_url=None,  # _add_api_docs serves it without a CDN
        redoc_url=None,  # ReDoc would still fetch its logo from its CDN
    )
    app.state.sealpost = sp
    _add_api_docs(app)

    @app.exception_handler(SealpostError)
    async def sealpost_error(_request: Request, exc: SealpostError) -> JSONResponse:
        headers = {"Retry-After": "1"} if isinstance(exc, NotSealedYet) else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if exc.status >= 500:
            log.error("api.error", error=exc.message)
        return _error(exc.status, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, details or "invalid request")

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz(sealpost: SealpostDep, response: Response) -> Health:
        """Liveness and readiness: the database answers, the ledger is sealing, and how far
        behind the events dispatcher and the broker are."""
        try:
            with sealpost.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            head = sealpost.log_storage.head()
            age = None if head is None else (datetime.now(UTC) - head.checkpoint.time)
            ledger_health = LedgerHealth(
                tree_size=0 if head is None else head.tree_size,
                pending_records=sealpost.log_storage.pending_count(),
                last_head_age_seconds=None if age is None else round(age.total_seconds(), 3),
            )
            backlog = sealpost.outbox.backlog()
            events_health = EventsHealth(
                unpositioned=backlog["unpositioned"],
                last_position=backlog["last_position"],
                amqp_lag=backlog["last_position"] - backlog["amqp_cursor"]
                if sealpost.settings.amqp_url
                else None,
                webhook_deliveries=sealpost.webhook_deliveries.counts(),
            )
        except Exception as exc:  # a health check reports, it does not crash
            log.error("healthz.database", error=str(exc))
            response.status_code = 503
            return Health(status="unavailable", database="unreachable", ledger=None)
        return Health(status="ok", database="ok", ledger=ledger_health, events=events_health)

    @app.post(
        "/tsa",
        tags=["timestamps"],
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/timestamp-query": {
                        "schema": {"type": "string", "format": "binary"}
                    }
                },
            }
        },
        responses={200: {"content": {"application/timestamp-reply": {}}}},
    )
    async def timestamp_authority(request: Request) -> Response:
        """The embedded RFC 3161 TSA over HTTP (RFC 3161 §3.4): DER query in, DER reply out.

        A malformed query still gets a DER reply, with status ``rejection`` and a failInfo.
        """
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/timestamp-query":
            return _error(415, "send a DER TimeStampReq as application/timestamp-query")
        reply = sp.embedded_tsa.respond(await request.body())
        return Response(reply, media_type="application/timestamp-reply")

    app.include_router(ledger.router)
    app.include_router(communications.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    app.include_router(signatures.router)
    app.include_router(signing_page.router)
    app.mount("/static", StaticFiles(directory=signing_page.STATIC_DIR), name="static")
    return app
