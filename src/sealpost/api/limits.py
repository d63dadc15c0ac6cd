"""The request guard: body size limits, authentication before the body, rate limits.

A pure ASGI middleware (no ``BaseHTTPMiddleware``, which would buffer), in front of every
route, deciding from the request line and headers alone, before the app reads a byte of the
body:

1. **rate per client IP** (IPv6: per /64): the signing page's own bucket for ``/sign/...``,
   the pickup page's own for ``/pickup/...`` (a recipient's page must not starve behind the
   API's traffic from the same address, nor a link-guessing client eat the API's), the API's
   for the rest (``/healthz``, ``/readyz``, ``/metrics`` and static files apart) → 429
   with ``Retry-After``;
2. **size**: a ``Content-Length`` over the route's limit (:class:`BodyLimits`) → 413;
3. **key first**: a ``/v1`` request with a body has its API key checked (and its tenant's
   rate taken) before the body is read → 401 (or 429) at once.  The dependency of the
   endpoint then reuses that tenant (``api/auth.py``);
4. **streamed bytes are counted**: a chunked body, or one longer than announced, is cut at
   the limit: the guard answers 413 and the app sees the client gone.

A refusal sent while a body is still on its way says ``Connection: close``, so the server
closes the connection instead of reading the rest to keep it alive (RFC 9112 §9.6).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sealpost.api.auth import ADMITTED, admit, presented_key
from sealpost.api.errors import database_error_response, error_response
from sealpost.config import Settings
from sealpost.db.engine import release_request_connections
from sealpost.errors import ContentTooLarge, RateLimited, SealpostError
from sealpost.logging import get_logger
from sealpost.ratelimit import RateLimiter, client_key, limiter, retry_after
from sealpost.tenants.repository import Tenant, TenantRepository

log = get_logger(__name__)


def _admit_then_release(
    tenants: TenantRepository, per_tenant: RateLimiter | None, key: str | None
) -> Tenant:
    """``admit``, then the key check's connection back to the pool: the body is read next, at
    the client's pace, and must not hold a database connection meanwhile."""
    try:
        return admit(tenants, per_tenant, key)
    finally:
        release_request_connections()


SIGNING_PAGE = "/sign/"
PICKUP_PAGE = "/pickup/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNLIMITED = ("/healthz", "/readyz", "/metrics", "/static/", "/docs/assets/", "/sms/callbacks/")
"""Paths no per-IP rate applies to: health probes, static files, and the SMS operator's signed
delivery reports (a gateway posts thousands from a few addresses; a refused one is only late)."""


@dataclass(frozen=True)
class BodyLimits:
    """The largest request body of each kind of route, in bytes."""

    default: int
    """JSON API routes without documents."""
    communications: int
    """``POST /v1/communications``: a whole message, base64."""
    signatures: int
    """``POST /v1/signatures``: PDFs, base64."""
    tsa: int
    """``POST /tsa``: a DER TimeStampReq (RFC 3161 §2.4.1), a few hundred bytes."""
    signing_page: int
    """The signing page's calls: at most a drawn signature (PNG, base64)."""
    pickup_page: int = 16 * 1024
    """The pickup page's calls: a link, a code or answer, a rejection's reason (2000 chars)."""
    sequences_bulk: int = 16 * 1024 * 1024
    """``POST /v1/sequences/{id}/enrolments:bulk``: 10,000 rows of CSV or JSON lines."""

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            default=settings.api_max_body_bytes,
            communications=settings.resolved_api_max_communication_body_bytes,
            signatures=settings.resolved_api_max_signature_body_bytes,
            tsa=settings.api_max_tsa_body_bytes,
            signing_page=settings.api_max_signing_page_body_bytes,
            pickup_page=settings.api_max_pickup_page_body_bytes,
        )

    def of(self, method: str, path: str) -> int:
        if method == "POST" and path == "/v1/communications":
            return self.communications
        if method == "POST" and path == "/v1/archive/messages":
            return self.communications
        if method == "POST" and path == "/v1/signatures":
            return self.signatures
        if method == "POST" and path.endswith("/enrolments:bulk"):
            return self.sequences_bulk
        if path == "/tsa":
            return self.tsa
        if path.startswith(SIGNING_PAGE):
            return self.signing_page
        if path.startswith(PICKUP_PAGE):
            return self.pickup_page
        return self.default


@dataclass(frozen=True)
class RateLimits:
    """The API's rate limiters (None: that limit is off); tests move their clocks."""

    per_tenant: RateLimiter | None
    per_ip: RateLimiter | None
    signing_page_per_ip: RateLimiter | None
    pickup_page_per_ip: RateLimiter | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            per_tenant=limiter(settings.rate_limit_api_per_tenant),
            per_ip=limiter(settings.rate_limit_api_per_ip),
            signing_page_per_ip=limiter(settings.rate_limit_signing_page_per_ip),
            pickup_page_per_ip=limiter(settings.rate_limit_pickup_page_per_ip),
        )

    def per_ip_for(self, path: str) -> RateLimiter | None:
        if path.startswith(SIGNING_PAGE):
            return self.signing_page_per_ip
        if path.startswith(PICKUP_PAGE):
            return self.pickup_page_per_ip
        if path.startswith(UNLIMITED):
            return None
        return self.per_ip


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _path(scope: Scope) -> str:
    """The path under the app's root path (as the router sees it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestGuard:
    """The middleware; ``create_app`` installs it outermost but for Starlette's error
    middleware."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tenants: TenantRepository,
        bodies: BodyLimits,
        rates: RateLimits,
    ) -> None:
        self.app = app
        self.tenants = tenants
        self.bodies = bodies
        self.rates = rates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _path(scope)
        headers = Headers(scope=scope)
        length = _content_length(headers)
        if length is not None:
            has_body = length > 0
        else:  # chunked, or HTTP/2 without a length: a body unless the method never has one
            has_body = "transfer-encoding" in headers or scope["method"] in BODY_METHODS
        close = {"Connection": "close"} if has_body else None
        client = scope.get("client")
        ip = client_key(str(client[0])) if client else "unknown"

        bucket = self.rates.per_ip_for(path)
        if bucket is not None and (wait := bucket.take(ip)):
            log.info("api.rate_limited", client_ip=ip, path=path, limit=str(bucket.rate))
            refusal = RateLimited(
                f"too many requests from your address ({bucket.rate}): retry later",
                retry_after=retry_after(wait),
            )
            await error_response(refusal, close)(scope, receive, send)
            return
        limit = self.bodies.of(scope["method"], path)
        if length is not None and length > limit:
            log.info("api.body_too_large", client_ip=ip, path=path, length=length, limit=limit)
            too_large = ContentTooLarge(f"the body is over {limit} bytes", max_bytes=limit)
            await error_response(too_large, close)(scope, receive, send)
            return
        if has_body and path.startswith("/v1/"):
            key = presented_key(headers.get("authorization"), headers.get("x-api-key"))
            try:
                tenant = await anyio.to_thread.run_sync(
                    _admit_then_release, self.tenants, self.rates.per_tenant, key
                )
            except SealpostError as exc:
                await error_response(exc, close)(scope, receive, send)
                return
            except DBAPIError as exc:
                await database_error_response(exc, close)(scope, receive, send)
                return
            scope.setdefault("state", {})[ADMITTED] = tenant
        if not has_body:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app with the body counted as it arrives; past ``limit``, answer 413, tell
        the app the client left, and drop whatever it answers."""
        received = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    log.info("api.body_too_large", path=scope["path"], limit=limit)
                    if not started:
                        too_large = ContentTooLarge(
                            f"the body is over {limit} bytes", max_bytes=limit
                        )
                        response = error_response(too_large, {"Connection": "close"})
                        await response(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception as exc:
            if not refused:
                raise
            # the app failed reading a body it was told was abandoned: already answered
            log.debug("api.after_refusal", error=repr(exc))


def install(app: FastAPI, settings: Settings, tenants: TenantRepository) -> RateLimits:
    """Put the guard in front of ``app``; returns its rate limiters."""
    rates = RateLimits.from_settings(settings)
    app.add_middleware(
        RequestGuard, tenants=tenants, bodies=BodyLimits.from_settings(settings), rates=rates
    )
    return rates
