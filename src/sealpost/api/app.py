"""The FastAPI application factory: the HTTP entry point over the composed parts.

``create_app`` takes a built :class:`Sealpost` (the composition root) and hands each domain's
router the parts it uses through ``app.state`` (one entry per domain; each domain's
``endpoints.py`` declares the FastAPI dependency that reads it).  The lifespan starts and
stops the sequencer when ``start_background`` is true.  Every error is an RFC 9457 problem
(``api/errors.py``), an expected failure a 4xx, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

import sealpost
from sealpost import access
from sealpost.api import errors
from sealpost.api.errors import problem
from sealpost.api.schemas import EventsHealth, Health, LedgerHealth
from sealpost.app import Sealpost
from sealpost.communications import endpoints as communications
from sealpost.events import endpoints as events
from sealpost.events.webhooks import endpoints as webhooks
from sealpost.evidence import endpoints as evidence
from sealpost.logging import get_logger
from sealpost.signatures import endpoints as signatures
from sealpost.signatures import page_endpoints as signing_page

log = get_logger(__name__)

ROUTERS = (
    evidence.router,
    communications.router,
    events.router,
    webhooks.router,
    signatures.router,
    signing_page.router,
)
"""Every domain's router, in the order the OpenAPI document lists them."""


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
    )
    app.state.sealpost = sp  # the health and TSA routes below, only
    app.state.tenants = sp.tenants
    app.state.ledger = sp.ledger
    app.state.communications = sp.communications_parts
    app.state.events = sp.events_parts
    app.state.signatures = sp.signatures_parts
    errors.install(app)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz(response: Response) -> Health:
        """Liveness and readiness: the database answers, the ledger is sealing, and how far
        behind the events dispatcher and the broker are."""
        sealpost = sp
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
            return problem(415, "send a DER TimeStampReq as application/timestamp-query")
        reply = sp.embedded_tsa.respond(await request.body())
        return Response(reply, media_type="application/timestamp-reply")

    for router in ROUTERS:
        app.include_router(router)
    # the more specific mount first: /static/access is the access kit's shared page modules
    app.mount(access.STATIC_PATH, StaticFiles(directory=access.STATIC_DIR), name="access-static")
    app.mount("/static", StaticFiles(directory=signing_page.STATIC_DIR), name="static")
    return app
