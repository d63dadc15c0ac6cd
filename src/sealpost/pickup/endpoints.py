"""Registered pickup over HTTP: the tenant's defaults (``/v1/settings/pickup``) and the
recipient's pickup page (``/pickup/{link}`` and its JSON API ``/pickup/api/*``).

``GET /pickup/{link}`` renders the page without spending the link (mail scanners fetch every
link of a message); the page's script spends it (``POST /pickup/api/open``) for a session token
that travels only in the ``X-Pickup-Session`` header.  Strict CSP, no referrer, no caching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StrictBool

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.text import Choice, Identifier, MultiLine, SingleLine
from sealpost.db.full import StorageFull
from sealpost.errors import (
    Conflict,
    NotFound,
    SealpostError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.pickup import page
from sealpost.pickup.model import CONSIGNMENT_MODES, IDENTIFICATIONS, POLICIES, Visitor
from sealpost.pickup.recipient import PickupPage
from sealpost.pickup.service import PickupService

SESSION_HEADER = "X-Pickup-Session"
API_BASE = "/pickup/api"


@dataclass(frozen=True)
class PickupParts:
    service: PickupService
    page: PickupPage


async def pickup_parts(request: Request) -> PickupParts:
    parts: PickupParts = request.app.state.pickup
    return parts


PickupDep = Annotated[PickupParts, Depends(pickup_parts)]
SessionDep = Annotated[str | None, Header(alias=SESSION_HEADER, max_length=100)]

router = APIRouter(
    prefix="/v1",
    tags=["pickup"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)
page_router = APIRouter(tags=["pickup page"], include_in_schema=False)


class PickupSettings(BaseModel):
    """A tenant's pickup defaults, for messages that do not choose."""

    delivery: Annotated[str, Choice(("direct", "pickup"))] = "direct"
    identification: Annotated[str, Choice(IDENTIFICATIONS)] = "email_otp"
    consent: Annotated[str, Choice(CONSIGNMENT_MODES)] = "consent"
    policy: Annotated[str, Choice(POLICIES)] = "default"
    hide_sender: StrictBool = Field(
        False,
        description="Name no sender in the notice (From, Subject, body) nor on the page until "
        "acceptance, whatever the policy (fr always hides it).",
    )


@router.get("/settings/pickup", response_model=PickupSettings)
def get_settings(parts: PickupDep, tenant: TenantDep) -> PickupSettings:
    return PickupSettings(**(parts.service.repo.settings(tenant.id) or {}))


@router.put("/settings/pickup", response_model=PickupSettings)
def put_settings(body: PickupSettings, parts: PickupDep, tenant: TenantDep) -> PickupSettings:
    """The whole object is replaced."""
    parts.service.put_settings(tenant.id, body.model_dump())
    return body


class ResendOut(BaseModel):
    communication_id: str
    notice_communication_id: str | None = Field(
        None, description="The new notice by email (a certified email), if it goes by email."
    )
    notice_sms_id: str | None = Field(
        None, description="The new notice by SMS (a certified SMS), if it goes by SMS."
    )
    channels: list[str] = Field(description="The channels that took the new notice.")
    available_until: str = Field(
        description="Until when the new link works, UTC: the window's close (unchanged) while "
        "the pickup is open; later once the recipient accepted."
    )
    notices_sent: int
    resends_left: int = Field(description="How many more resends this pickup allows.")


@router.post(
    "/communications/{communication_id}/pickup/resend",
    response_model=ResendOut,
    responses=problem_responses(NotFound, Conflict),
)
def resend(communication_id: Identifier, parts: PickupDep, tenant: TenantDep) -> ResendOut:
    """A new notice by each of the pickup's channels, each with a fresh single-use link; the
    older links not opened yet stop working.  A locked-out recipient may try again (code sends
    and wrong tries start again).  Also once the recipient accepted (a lost page: they
    identify again and go straight to the content).  409 before the first notice, after the
    window closed unaccepted, once rejected or expired, or after 3 resends."""
    return ResendOut(**parts.service.resend(tenant.id, communication_id[:36]))


# -- the page ----------------------------------------------------------------------------


def _visitor(request: Request) -> Visitor:
    agent = request.headers.get("user-agent")
    return Visitor(request.client.host if request.client else None, agent[:1000] if agent else None)


@page_router.get("/pickup/{token}", response_class=HTMLResponse)
def pickup_page(token: str, request: Request, parts: PickupDep) -> HTMLResponse:
    """The page; the link is checked, not spent."""
    lang = page.language(request.headers.get("accept-language"))
    config: dict[str, Any] = {
        "link": token,
        "open_url": f"{API_BASE}/open",
        "api_base": API_BASE,
        "lang": lang,
        "session_header": SESSION_HEADER,
    }
    try:
        parts.page.by_link(token[:100])
    except SealpostError as exc:
        if not parts.page.spent(token[:100]):
            return HTMLResponse(
                page.error_html(exc.message, lang), status_code=exc.status, headers=page.HEADERS
            )
        # A reload of the page that spent this link: the script resumes the page session it
        # kept in the tab's sessionStorage, or shows why the link cannot be used (still 410).
        config.update(resume=True, gone=exc.message)
        return HTMLResponse(
            page.page_html(config, lang), status_code=exc.status, headers=page.HEADERS
        )
    return HTMLResponse(page.page_html(config, lang), headers=page.HEADERS)


class OpenIn(BaseModel):
    link: SingleLine = Field(max_length=100)


class AnswerIn(BaseModel):
    answer: SingleLine = Field(max_length=300, description="The code, or the answer.")


class RejectIn(BaseModel):
    reason: MultiLine = Field("", max_length=2000)


@page_router.post(f"{API_BASE}/open")
def open_page(body: OpenIn, request: Request, parts: PickupDep, response: Response) -> Any:
    response.headers.update(page.API_HEADERS)
    session, found = parts.page.open(body.link, _visitor(request))
    digest = parts.page.by_session(session)[1]
    return {"session_token": session, **parts.page.view(found, digest)}


@page_router.get(f"{API_BASE}/state")
def state(parts: PickupDep, response: Response, session: SessionDep = None) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    return parts.page.view(found, digest)


@page_router.post(f"{API_BASE}/code")
def send_code(
    request: Request,
    parts: PickupDep,
    response: Response,
    session: SessionDep = None,
) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    return parts.page.send_code(found, digest, _visitor(request))


@page_router.post(f"{API_BASE}/identify")
def identify(
    body: AnswerIn,
    request: Request,
    parts: PickupDep,
    response: Response,
    session: SessionDep = None,
) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    after = parts.page.identify(found, digest, body.answer, _visitor(request))
    return parts.page.view(after, digest)


@page_router.post(f"{API_BASE}/accept")
def accept(
    request: Request,
    parts: PickupDep,
    response: Response,
    session: SessionDep = None,
) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    return parts.page.view(parts.page.accept(found, digest, _visitor(request)), digest)


@page_router.post(f"{API_BASE}/reject")
def reject(
    body: RejectIn,
    request: Request,
    parts: PickupDep,
    response: Response,
    session: SessionDep = None,
) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    after = parts.page.reject(found, digest, _visitor(request), body.reason)
    return parts.page.view(after, digest)


@page_router.get(f"{API_BASE}/content")
def content(
    request: Request,
    parts: PickupDep,
    response: Response,
    session: SessionDep = None,
) -> Any:
    response.headers.update(page.API_HEADERS)
    found, digest = parts.page.by_session(session)
    return parts.page.content(found, digest, _visitor(request))


@page_router.get(f"{API_BASE}/download/{{part}}")
def download(part: str, request: Request, parts: PickupDep, session: SessionDep = None) -> Response:
    found, digest = parts.page.by_session(session)
    name, ctype, data = parts.page.download(found, digest, _visitor(request), part[:12])
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_. ") else "_" for c in name)
    exact = quote(name[:150], safe="")
    disposition = f"attachment; filename=\"{ascii_name[:150]}\"; filename*=UTF-8''{exact}"
    return Response(
        data,
        media_type=ctype if "/" in ctype else "application/octet-stream",
        headers={**page.API_HEADERS, "Content-Disposition": disposition},
    )
