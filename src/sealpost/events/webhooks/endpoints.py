"""Webhook endpoints over REST: create (the secret is shown once), list, change, delete,
rotate the secret, send a test event, and read the delivery log.
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, StrictBool

from sealpost.api import cursors
from sealpost.api.auth import TenantDep
from sealpost.api.cursors import Cursor
from sealpost.api.errors import problem_responses
from sealpost.api.text import Choice, Identifier, Matches, SingleLine
from sealpost.config import Settings
from sealpost.db.full import StorageFull
from sealpost.errors import (
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.events.cloudevents import SPECVERSION, encode, source_of
from sealpost.events.endpoints import EventsDep
from sealpost.events.registry import REGISTRY, TEST_EVENT_TYPE, patterns, valid_pattern
from sealpost.events.webhooks.deliveries import DELIVERY_STATES, WebhookDelivery
from sealpost.events.webhooks.headers import new_secret
from sealpost.events.webhooks.repository import Endpoint
from sealpost.events.webhooks.sender import http_session, post_event
from sealpost.ledger.records import format_optional_time, format_time

router = APIRouter(
    prefix="/v1",
    tags=["webhooks"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)

MAX_URL = 2000


_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})"
_HOST = r"(?:(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+|\[[0-9A-Fa-f:.]+\])"
URL_PATTERN = rf"^https?://{_HOST}(?::[0-9]{{0,5}})?(?:/{_PCHAR}*)?(?:\?(?:{_PCHAR}|\?)*)?(?:#(?:{_PCHAR}|\?)*)?$"
"""An absolute http(s) URI (RFC 3986 §3, ASCII: a host in IDNA A-labels) without user
information (§3.2.1): the signature authenticates the sender, not a password in the URL."""
Url = Annotated[
    str,
    Matches(
        URL_PATTERN,
        "must be an absolute http:// or https:// URL (RFC 3986: ASCII, percent-encoded), "
        "without credentials",
    ),
    Field(
        min_length=len("http://a"),
        max_length=MAX_URL,
        json_schema_extra={"format": "uri"},
        description="The absolute http(s) URL that receives POSTs; its host must be public "
        "(unless the operator allows private networks).",
    ),
]
EventPattern = Annotated[str, Choice(patterns)]
"""A known event type, a family of them (``sealpost.communication.*``), or ``*``."""


class EndpointIn(BaseModel):
    url: Url
    description: SingleLine = Field("", max_length=500)
    event_types: list[EventPattern] = Field(
        default_factory=list,
        max_length=100,
        description="Types to receive; empty: all. A family: 'sealpost.communication.*'.",
    )
    enabled: StrictBool = True

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://crm.example.com/hooks/sealpost",
                    "description": "CRM",
                    "event_types": ["sealpost.communication.*"],
                }
            ]
        }
    }


class EndpointPatch(BaseModel):
    url: Url | None = None
    description: SingleLine | None = Field(None, max_length=500)
    event_types: list[EventPattern] | None = Field(None, max_length=100)
    enabled: StrictBool | None = Field(
        None, description="true re-enables a disabled endpoint: its paused backlog flows again."
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    failing_since: str | None
    last_success_at: str | None
    previous_secret_valid_until: str | None
    created_at: str
    updated_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="whsec_...: shown this once; verify signatures with it.")


class SecretRotated(BaseModel):
    secret: str
    previous_secret_valid_until: str | None


class TestResult(BaseModel):
    delivery_id: str
    event_id: str
    success: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response_body: str | None


class WebhookDeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str | None
    subject: str
    kind: str = Field(description="event, replay or test.")
    state: str = Field(description="pending, delivered, failed or cancelled.")
    attempts: int
    next_attempt_at: str | None
    last_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class WebhookDeliveryDetail(WebhookDeliveryOut):
    attempts_log: list[dict[str, Any]]


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None


def _out(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "url": e.url,
        "description": e.description,
        "event_types": list(e.event_types),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "disabled_at": format_optional_time(e.disabled_at),
        "failing_since": format_optional_time(e.failing_since),
        "last_success_at": format_optional_time(e.last_success_at),
        "previous_secret_valid_until": format_optional_time(e.previous_secret_until),
        "created_at": format_time(e.created_at),
        "updated_at": format_time(e.updated_at),
    }


def _delivery(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "subject": d.subject,
        "kind": d.kind,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": format_optional_time(d.next_attempt_at),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": format_time(d.created_at),
        "updated_at": format_time(d.updated_at),
    }


def checked_url(settings: Settings, url: str) -> str:
    """An absolute http(s) URL without credentials whose host is public, checked the way the
    sender checks it (on the resolved addresses), so that an endpoint that would be refused at
    every send is refused at registration instead: numeric forms of loopback (``2130706433``,
    ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``0``), a trailing dot, and names of the hosts
    file all resolve to what they are.  A name that does not resolve now is accepted (DNS may
    be down); every send checks it again."""
    try:
        split = urlsplit(url.strip())
    except ValueError:  # e.g. a bracketed host that is no IPv6 address: "http://[7]/"
        raise InvalidInput("url must be an absolute http:// or https:// URL") from None
    if split.scheme not in ("http", "https") or not split.hostname:
        raise InvalidInput("url must be an absolute http:// or https:// URL")
    if split.username or split.password:
        raise InvalidInput("url must not carry credentials; authenticate with the signature")
    if any(ord(c) < 33 or ord(c) == 127 for c in url.strip()):
        raise InvalidInput("url must not contain spaces or control characters")
    if not settings.webhook_allow_private_networks:
        host = split.hostname.rstrip(".")
        private = _private_addresses(host)
        if private:
            raise InvalidInput(
                f"{split.hostname} is not a public address ({', '.join(private)}; the operator "
                "can allow private networks with SEALPOST_WEBHOOK_ALLOW_PRIVATE_NETWORKS)"
            )
    return url.strip()


def _private_addresses(host: str) -> list[str]:
    """The non-public addresses ``host`` stands for: itself if it is a literal, else what the
    system resolver (hosts file, DNS) answers; ``localhost`` names are local by definition."""
    if not host or host == "localhost" or host.endswith(".localhost"):
        return [host or "empty host"]
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return [] if literal.is_global else [str(literal)]
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []  # not resolvable now: the send-time check decides
    addresses = {str(info[4][0]) for info in found}
    return sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global)


def checked_types(patterns: list[str]) -> list[str]:
    unknown = [p for p in patterns if not valid_pattern(p)]
    if unknown:
        known = ", ".join(k.type for k in REGISTRY.kinds)
        raise InvalidInput(f"unknown event types {unknown}; known: {known} (or 'family.*')")
    return list(dict.fromkeys(patterns))


@router.post("/webhooks", status_code=201, response_model=EndpointCreated)
def create_endpoint(body: EndpointIn, parts: EventsDep, tenant: TenantDep) -> EndpointCreated:
    """Register an endpoint; the response carries its signing secret, shown only here."""
    secret = new_secret()
    endpoint = parts.webhooks.create(
        tenant.id,
        url=checked_url(parts.settings, body.url),
        description=body.description,
        event_types=checked_types(body.event_types),
        secret=secret,
        enabled=body.enabled,
    )
    return EndpointCreated(**_out(endpoint), secret=secret)


@router.get("/webhooks")
def list_endpoints(parts: EventsDep, tenant: TenantDep) -> dict[str, list[EndpointOut]]:
    return {"items": [EndpointOut(**_out(e)) for e in parts.webhooks.endpoints(tenant.id)]}


@router.get("/webhooks/{endpoint_id}", response_model=EndpointOut)
def get_endpoint(endpoint_id: Identifier, parts: EventsDep, tenant: TenantDep) -> EndpointOut:
    return EndpointOut(**_out(parts.webhooks.get(tenant.id, endpoint_id)))


@router.patch("/webhooks/{endpoint_id}", response_model=EndpointOut)
def update_endpoint(
    endpoint_id: Identifier, body: EndpointPatch, parts: EventsDep, tenant: TenantDep
) -> EndpointOut:
    """Change the URL, filter or description; enable or disable it."""
    endpoint = parts.webhooks.update(
        tenant.id,
        endpoint_id,
        url=checked_url(parts.settings, body.url) if body.url is not None else None,
        description=body.description,
        event_types=checked_types(body.event_types) if body.event_types is not None else None,
        enabled=body.enabled,
        retry_window=timedelta(seconds=parts.settings.webhook_retry_window_seconds),
    )
    return EndpointOut(**_out(endpoint))


@router.delete("/webhooks/{endpoint_id}", status_code=204, response_class=Response)
def delete_endpoint(endpoint_id: Identifier, parts: EventsDep, tenant: TenantDep) -> Response:
    """The endpoint, its pending deliveries and its log."""
    parts.webhooks.delete(tenant.id, endpoint_id)
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/rotate-secret", response_model=SecretRotated)
def rotate_secret(endpoint_id: Identifier, parts: EventsDep, tenant: TenantDep) -> SecretRotated:
    """A new secret from now on; the previous one also signs for
    ``SEALPOST_WEBHOOK_PREVIOUS_SECRET_SECONDS`` (24 h), so receivers can switch at leisure."""
    secret = new_secret()
    grace = timedelta(seconds=parts.settings.webhook_previous_secret_seconds)
    endpoint = parts.webhooks.rotate_secret(tenant.id, endpoint_id, secret, grace)
    return SecretRotated(
        secret=secret,
        previous_secret_valid_until=format_optional_time(endpoint.previous_secret_until),
    )


@router.post("/webhooks/{endpoint_id}/test", response_model=TestResult)
async def test_endpoint(endpoint_id: Identifier, parts: EventsDep, tenant: TenantDep) -> TestResult:
    """Send a ``sealpost.webhook.test`` event now, signed like any other, and report the
    answer (one attempt, no retry; it is in the delivery log too)."""
    endpoint = await run_in_threadpool(parts.webhooks.get, tenant.id, endpoint_id)
    secrets = await run_in_threadpool(parts.webhooks.secrets, endpoint.id)
    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    payload = encode(
        {
            "specversion": SPECVERSION,
            "id": event_id,
            "source": source_of(tenant.id),
            "type": TEST_EVENT_TYPE,
            "subject": f"webhooks/{endpoint.id}",
            "time": format_time(now),
            "datacontenttype": "application/json",
            "data": {"endpoint_id": endpoint.id, "message": "test event from Sealpost"},
        }
    )
    async with http_session(parts.settings) as session:
        result = await post_event(
            session,
            endpoint.url,
            event_id,
            payload,
            secrets.valid(now),
            allow_private=parts.settings.webhook_allow_private_networks,
        )
    delivery_id = await run_in_threadpool(parts.webhook_log.log_test, endpoint.id, event_id, result)
    return TestResult(
        delivery_id=delivery_id,
        event_id=event_id,
        success=result.success,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        error=result.error,
        response_body=result.response_body,
    )


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=WebhookDeliveryPage)
def list_deliveries(
    endpoint_id: Identifier,
    parts: EventsDep,
    tenant: TenantDep,
    state: Annotated[
        list[Annotated[str, Choice(DELIVERY_STATES, empty=True)]] | None,
        Query(description=f"Any of {', '.join(DELIVERY_STATES)}; repeatable; empty: any."),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WebhookDeliveryPage:
    """The delivery log, newest first; ``?state=failed`` lists what never arrived."""
    parts.webhooks.get(tenant.id, endpoint_id)  # 404 for another tenant's endpoint
    items = parts.webhook_log.deliveries(
        tenant.id,
        endpoint_id,
        states=[s for s in state or () if s],
        before=cursors.decode(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, more = items[:limit], len(items) > limit
    return WebhookDeliveryPage(
        items=[WebhookDeliveryOut(**_delivery(d)) for d in page],
        next_cursor=cursors.encode(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}", response_model=WebhookDeliveryDetail
)
def get_delivery(
    endpoint_id: Identifier, delivery_id: Identifier, parts: EventsDep, tenant: TenantDep
) -> WebhookDeliveryDetail:
    """One delivery and each of its attempts: time, duration, status, response, error."""
    found = parts.webhook_log.delivery(tenant.id, endpoint_id, delivery_id)
    if found is None:
        raise NotFound(f"no delivery {delivery_id} for endpoint {endpoint_id}")
    attempts = [
        {**a, "started_at": format_time(a["started_at"])}
        for a in parts.webhook_log.attempts(delivery_id)
    ]
    return WebhookDeliveryDetail(**_delivery(found), attempts_log=attempts)
