"""The FastAPI application factory: the HTTP entry point over the composed parts.

``create_app`` takes a built :class:`Sealpost` (the composition root) and hands each domain's
router the parts it uses through ``app.state`` (one entry per domain; each domain's
``endpoints.py`` declares the FastAPI dependency that reads it).  The lifespan starts and
stops the sequencer when ``start_background`` is true.  Every error is an RFC 9457 problem
(``api/errors.py``), an expected failure a 4xx, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import sealpost
from sealpost import access
from sealpost import pickup as pickup_static
from sealpost.api import errors, limits
from sealpost.api.errors import problem
from sealpost.api.schemas import EventsHealth, Health, LedgerHealth, LoopHealthOut
from sealpost.api.schemas import Readiness as ReadinessOut
from sealpost.app import Sealpost
from sealpost.archive import endpoints as archive
from sealpost.archive import hold_endpoints as archive_holds
from sealpost.archive import mailbox_endpoints as archive_mailboxes
from sealpost.archive import search_api as archive_search
from sealpost.archive import sla_endpoints as archive_sla
from sealpost.communications import endpoints as communications
from sealpost.communications import reply_endpoints as communication_replies
from sealpost.communications.tracking import endpoints as tracking
from sealpost.db.engine import request_scope
from sealpost.db.full import free_space_problems
from sealpost.deadlines import endpoints as deadlines
from sealpost.events import endpoints as events
from sealpost.events.webhooks import endpoints as webhooks
from sealpost.evidence import endpoints as evidence
from sealpost.evidence import log_endpoints as public_log
from sealpost.logging import get_logger
from sealpost.ops import CONTENT_TYPE, Readiness, exposition
from sealpost.pickup import endpoints as pickup
from sealpost.sequences import endpoints as sequences
from sealpost.signatures import endpoints as signatures
from sealpost.signatures import page_endpoints as signing_page
from sealpost.sms import callbacks as sms_callbacks
from sealpost.sms import endpoints as sms

log = get_logger(__name__)


class OneConnection:
    """ASGI middleware: the reads of one request share one pooled database connection
    (``db.engine.request_scope``), returned to the pool when the response starts (and before
    the request waits for another connection: ``release_request_connections``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_scope() as connections:

            async def release_then_send(message: Message) -> None:
                # the response starts: its body (an original.eml, a large export) is sent at
                # the client's pace, without a connection held for it
                if message["type"] == "http.response.start" and connections.used:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(connections.close)
                await send(message)

            try:
                await self.app(scope, receive, release_then_send)
            finally:
                if connections.used:  # the pool's reset may wait on the network: off the loop
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(connections.close)


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}

ROUTERS = (
    evidence.router,
    public_log.router,
    communications.router,
    communication_replies.router,
    events.router,
    webhooks.router,
    signatures.router,
    signing_page.router,
    pickup.router,
    pickup.page_router,
    sms.router,
    tracking.router,
    tracking.page_router,
    deadlines.router,
    sequences.router,
    sequences.page_router,
    archive.router,
    archive_mailboxes.router,
    archive_sla.router,
    archive_holds.router,
    archive_search.router,
)
"""Every domain's router, in the order the OpenAPI document lists them."""


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


def _storage_directories(sp: Sealpost) -> dict[str, Path]:
    """Where this process writes: the data directory, the blobs (unless they live in an S3
    bucket, whose space is the store's business), an SQLite database's own."""
    directories = {"data directory": sp.settings.data_dir}
    if not sp.settings.blob_url:
        directories["blob directory"] = sp.settings.resolved_blob_dir
    database = make_url(sp.settings.resolved_database_url)
    if database.get_backend_name() == "sqlite" and database.database not in (None, ":memory:"):
        directories["database directory"] = Path(str(database.database)).parent
    return directories


def create_app(sp: Sealpost, *, start_background: bool = True) -> FastAPI:
    readiness = Readiness(sp)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_background:
            sp.start_background()
        readiness.started.set()
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
    app.state.sealpost = sp  # the health and TSA routes below, only
    app.state.tenants = sp.tenants
    app.state.ledger = sp.ledger
    app.state.log_note_verifier = sp.note_signer.verifier
    app.state.communications = sp.communications_parts
    app.state.events = sp.events_parts
    app.state.signatures = sp.signatures_parts
    app.state.pickup = sp.pickup_parts
    app.state.sms = sp.sms_parts
    app.state.deadlines = sp.deadlines_parts
    app.state.sequences = sp.sequences_parts
    app.state.archive = sp.archive_parts
    app.state.archive_mailboxes = sp.archive_mailboxes
    app.state.archive_sla = sp.archive_sla_parts
    app.state.archive_holds = sp.archive_holds
    app.state.archive_search = sp.archive_search_parts
    errors.install(app)
    app.state.rate_limits = limits.install(app, sp.settings, sp.tenants)
    app.state.tenant_rate_limiter = app.state.rate_limits.per_tenant
    errors.document(app)
    _add_api_docs(app)
    app.add_middleware(OneConnection)  # outermost: the guard's key check shares it too

    @app.get(
        "/healthz",
        response_model=Health,
        tags=["operations"],
        responses={503: {"model": Health, "description": "Unhealthy or unavailable (status)."}},
    )
    def healthz(response: Response) -> Health:
        """Liveness and readiness: the database answers, the ledger is sealing, every
        background loop of this process runs, its storage has room, and how far behind the
        events dispatcher and the broker are.  503 when the database is unreachable, a loop of
        this process keeps failing, its storage is full, or (on a process that may seal) a
        record has waited longer than
        ``SEALPOST_HEALTH_MAX_UNSEALED_SECONDS`` for its seal; an API-only replica reports
        that lag as ``degraded`` with 200, since it still accepts.  Errors show by type only:
        this answers anyone."""
        sealpost = sp
        cap = sealpost.settings.metrics_backlog_cap  # counts stay bounded while a backlog grows
        try:
            with sealpost.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            now = datetime.now(UTC)
            head = sealpost.log_storage.head()
            age = None if head is None else (now - head.checkpoint.time)
            oldest = sealpost.log_storage.oldest_pending_time()
            waiting = None if oldest is None else (now - oldest).total_seconds()
            ledger_health = LedgerHealth(
                tree_size=0 if head is None else head.tree_size,
                pending_records=sealpost.log_storage.pending_count(cap),
                last_head_age_seconds=None if age is None else round(age.total_seconds(), 3),
                oldest_pending_age_seconds=None if waiting is None else round(waiting, 3),
            )
            backlog = sealpost.outbox.backlog(cap)
            events_health = EventsHealth(
                unpositioned=backlog["unpositioned"],
                last_position=backlog["last_position"],
                amqp_lag=backlog["last_position"] - backlog["amqp_cursor"]
                if sealpost.settings.amqp_url
                else None,
                webhook_deliveries=sealpost.webhook_log.counts(),
            )
        except Exception as exc:  # a health check reports, it does not crash
            log.error("healthz.database", error=str(exc))
            response.status_code = 503
            return Health(status="unavailable", database="unreachable", ledger=None)
        problems, unready = [], False
        bound = sealpost.settings.health_max_unsealed_seconds
        if waiting is not None and waiting > bound:
            problems.append(
                f"a record has waited {waiting:.0f} s for its seal (bound {bound:.0f} s): "
                "sealing has stopped"
            )
            # a process that may seal is not doing its job; an API-only replica still accepts
            # (records wait, committed): it reports the lag without leaving the pool
            unready = sealpost.settings.sequencer_enabled
        loops = {}
        for name, loop in sorted(dict(sealpost.supervisor.health).items()):
            loops[name] = LoopHealthOut(
                state=loop.state, restarts=loop.restarts, last_error=loop.last_error
            )
            if loop.failing():
                problems.append(f"the {name} loop is failing ({loop.last_error})")
                unready = True
        broker_down = sealpost.amqp_unreachable_seconds()
        if broker_down is not None:  # nothing is lost (the outbox keeps them): degraded only
            problems.append(
                f"RabbitMQ has not confirmed events for {broker_down:.0f} s: "
                f"{events_health.amqp_lag} wait in the outbox, published in order once it is back"
            )
        if sealpost.settings.health_min_free_bytes:
            disk_problems, full = free_space_problems(
                _storage_directories(sealpost), sealpost.settings.health_min_free_bytes
            )
            problems += disk_problems
            unready = unready or full
        if unready:
            response.status_code = 503
        return Health(
            status="unhealthy" if unready else ("degraded" if problems else "ok"),
            database="ok",
            ledger=ledger_health,
            events=events_health,
            loops=loops,
            problems=problems,
        )

    @app.get(
        "/readyz",
        response_model=ReadinessOut,
        tags=["operations"],
        responses={503: {"model": ReadinessOut, "description": "Not ready: the checks say why."}},
    )
    def readyz(response: Response) -> ReadinessOut:
        """Readiness: whether this replica can take work now (database and blob store
        reachable, its background loops started and not failing, RabbitMQ reachable where
        this process publishes); 503 names what is not.  ``/healthz`` is the status page;
        this is the yes/no a load balancer or orchestrator asks.  Errors show by type only."""
        report = readiness.check()
        if not report.ready:
            response.status_code = 503
        return ReadinessOut.model_validate(report.body())

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus metrics (docs/monitoring.md), only with ``SEALPOST_METRICS_TOKEN`` as a
        bearer token: the API port is often public, and metrics tell traffic volumes and cost
        database reads.  Unset, it is not served here (scrape ``SEALPOST_OPS_PORT``)."""
        token = sp.settings.metrics_token
        if token is None:
            return problem(404, "metrics are not served on this port (docs/monitoring.md)")
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return problem(401, "a valid metrics token is required", headers=BEARER_CHALLENGE)
        return Response(exposition(sp, "api"), media_type=CONTENT_TYPE)

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
        responses={
            200: {"content": {"application/timestamp-reply": {}}},
            **errors.problem_responses(415),
        },
    )
    async def timestamp_authority(request: Request) -> Response:
        """The embedded RFC 3161 TSA over HTTP (RFC 3161 §3.4): DER query in, DER reply out.

        A malformed query still gets a DER reply, with status ``rejection`` and a failInfo.
        """
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/timestamp-query":
            return problem(415, "send a DER TimeStampReq as application/timestamp-query")
        reply = sp.embedded_tsa.respond(await request.body())
        return Response(reply, media_type="application/timestamp-reply")

    for router in ROUTERS:
        app.include_router(router)
    if sp.settings.sms_provider == "http":  # the gateway's delivery reports, signed
        app.include_router(sms_callbacks.router(sp.sms, sp.settings, inbound=sp.sms_replies))
    # the more specific mount first: /static/access is the access kit's shared page modules
    app.mount(access.STATIC_PATH, StaticFiles(directory=access.STATIC_DIR), name="access-static")
    app.mount(pickup_static.STATIC_PATH, StaticFiles(directory=pickup_static.STATIC_DIR))
    app.mount("/static", StaticFiles(directory=signing_page.STATIC_DIR), name="static")
    return app
