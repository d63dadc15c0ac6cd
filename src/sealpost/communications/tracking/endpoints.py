"""Open and click tracking over HTTP: the tenant's choice (``/v1/settings/tracking``), the
pixel (``/t/o/{token}.gif``) and the link redirect (``/t/c/{token}``).

The public routes carry a token and nothing else (no address, no communication id).  An
unknown token is a 404 and writes nothing; a click redirects (302) only to the URL stored for
its token at submission, so the redirector cannot be pointed anywhere else.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, StrictBool

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.communications.endpoints import CommunicationsDep, CommunicationsParts
from sealpost.communications.tracking.service import (
    CLICK,
    OPEN,
    Choice,
    TrackingService,
    Visitor,
)
from sealpost.db.full import StorageFull
from sealpost.errors import (
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A transparent 1×1 GIF (42 bytes)."""
_NO_STORE = {
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

router = APIRouter(
    prefix="/v1",
    tags=["tracking"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)
page_router = APIRouter(tags=["tracking pixel and links"], include_in_schema=False)


class TrackingSettings(BaseModel):
    """A tenant's open and click tracking of direct emails; both off by default."""

    opens: StrictBool = Field(
        False,
        description="Add a 1x1 image to the HTML part; each fetch is an OpenTracked record.",
    )
    clicks: StrictBool = Field(
        False,
        description="Send the HTML part's http(s) links through Sealpost's redirect; each "
        "click is a LinkClicked record.",
    )


def _service(parts: CommunicationsParts) -> TrackingService:
    if parts.tracking is None:
        raise NotFound("open and click tracking is not available on this Sealpost")
    return parts.tracking


@router.get("/settings/tracking", response_model=TrackingSettings)
def get_settings(parts: CommunicationsDep, tenant: TenantDep) -> TrackingSettings:
    choice = _service(parts).choice(tenant.id)
    return TrackingSettings(opens=choice.opens, clicks=choice.clicks)


@router.put("/settings/tracking", response_model=TrackingSettings)
def put_settings(
    body: TrackingSettings, parts: CommunicationsDep, tenant: TenantDep
) -> TrackingSettings:
    """The whole object is replaced; it applies to direct emails submitted from now on (a
    message already accepted keeps the copy made then)."""
    _service(parts).put_choice(tenant.id, Choice(body.opens, body.clicks))
    return body


def _visitor(request: Request) -> Visitor:
    agent = request.headers.get("user-agent")
    return Visitor(request.client.host if request.client else None, agent[:1000] if agent else None)


@page_router.get("/t/o/{token}.gif")
def pixel(token: str, request: Request, parts: CommunicationsDep) -> Response:
    if _service(parts).hit(OPEN, token[:100], _visitor(request)) is None:
        raise NotFound("no such tracking image")
    return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)


@page_router.get("/t/c/{token}")
def click(token: str, request: Request, parts: CommunicationsDep) -> Response:
    found = _service(parts).hit(CLICK, token[:100], _visitor(request))
    if found is None or found.url is None:
        raise NotFound("no such link")
    return RedirectResponse(found.url, status_code=302, headers=_NO_STORE)
