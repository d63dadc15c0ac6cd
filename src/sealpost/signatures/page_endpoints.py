"""The signing page: what a signer opens from their invitation, or inside a CRM's iframe.

``GET /sign/{link}`` renders the page without spending the link: mail scanners (Outlook Safe
Links and the like) fetch every link of a message and would burn a single-use link before its
owner clicks.  The page's script then spends it (``POST /sign/api/open``) for a session token
that lives only in the page (never in a URL, a cookie or a Referer), so the page works inside a
third-party iframe where cookies are blocked, and a forwarded invitation is worth nothing once
opened.  The page talks to ``/sign/api/*`` with that token in ``X-Signing-Session``.

Headers: a strict CSP whose ``frame-ancestors`` lists the tenant's allowed origins (or
``'none'``), no referrer, no caching.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field, StrictBool

from sealpost.access.model import mask
from sealpost.api.text import Base64, MultiLine, SingleLine, origin
from sealpost.errors import SealpostError
from sealpost.logging import get_logger
from sealpost.signatures.endpoints import SignaturesDep, SignaturesParts
from sealpost.signatures.model import (
    LinkUnusable,
    SignInput,
    Visitor,
    decode_png,
)
from sealpost.signatures.repository import SignatureProcess, Signer
from sealpost.signatures.service import SignatureService

log = get_logger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
ASSET_BASE = "/static"
API_BASE = "/sign/api"

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
)

router = APIRouter(tags=["signing page"], include_in_schema=False)


class CodeIn(BaseModel):
    code: SingleLine = Field(max_length=12)


class SignIn(BaseModel):
    consent: StrictBool = False
    image_png: Base64 | None = Field(None, max_length=800_000)
    typed: SingleLine | None = Field(None, max_length=200)


class DeclineIn(BaseModel):
    reason: MultiLine = Field(max_length=2000)


def _visitor(request: Request) -> Visitor:
    agent = request.headers.get("user-agent")
    return Visitor(request.client.host if request.client else None, agent[:1000] if agent else None)


def _valid_origins(stored: list[str]) -> list[str]:
    """The stored origins that are origins: one stored before the API checked them (with a
    control character, a path) would otherwise break every page of the tenant (a header
    cannot carry it) or widen the policy; it is dropped, the others still apply."""
    kept = []
    for value in stored:
        try:
            kept.append(origin(value))
        except ValueError:
            log.warning("signing_page.invalid_frame_ancestor", value=repr(value)[:100])
    return kept


def _headers(frame_ancestors: list[str]) -> dict[str, str]:
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' blob: data:; connect-src 'self'; "
            f"frame-ancestors {ancestors}; base-uri 'none'; form-action 'self'"
        ),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


def _config_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script type="application/json"> block."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class OpenIn(BaseModel):
    link: SingleLine = Field(max_length=200)


def _error_page(service: SignatureService, token: str, exc: LinkUnusable) -> HTMLResponse:
    origins: list[str] = []
    if exc.process_id:
        found = service.repo.get(exc.process_id)
        origins = _valid_origins(service.repo.frame_ancestors(found.tenant_id)) if found else []
    html = _templates.get_template("sign_error.html").render(
        title="This link cannot be used",
        message=exc.message,
        renew_url=f"/sign/{token}/renew" if exc.renewable else None,
        asset_base=ASSET_BASE,
        config_json=_config_json(
            {
                "process_id": exc.process_id,
                "signer_id": exc.signer_id,
                "post_message_origins": origins,
                "error": exc.kind,
            }
        ),
    )
    return HTMLResponse(html, status_code=410, headers=_headers(origins))


@router.get("/sign/{token}", response_class=HTMLResponse)
def signing_page(token: str, parts: SignaturesDep) -> HTMLResponse:
    service = parts.signatures
    try:
        process, signer = service.check_link(token)
    except LinkUnusable as exc:
        return _error_page(service, token, exc)
    origins = _valid_origins(service.repo.frame_ancestors(process.tenant_id))
    config = {
        "open_url": f"{API_BASE}/open",
        "link": token,
        "api_base": API_BASE,
        "process_id": process.id,
        "signer_id": signer.id,
        "signer": {
            "name": signer.name,
            "role": signer.role,
            "identification": signer.identification,
        },
        "documents": [
            {
                "index": d.number,
                "name": d.name,
                "pages": [{"width": w, "height": h} for w, h in d.page_sizes],
            }
            for d in process.documents
        ],
        "consent_text": process.consent_text,
        "post_message_origins": origins,
        "status": service.page_status(process, signer),
    }
    html = _templates.get_template("sign.html").render(
        config_json=_config_json(config),
        title=process.title,
        message=process.message,
        signer_name=signer.name,
        code_by_sms=signer.identification == "sms_otp",
        asset_base=ASSET_BASE,
    )
    return HTMLResponse(html, headers=_headers(origins))


@router.post(f"{API_BASE}/open")
def open_link(body: OpenIn, request: Request, parts: SignaturesDep) -> JSONResponse:
    """Spend the link for a session: the page's first call.  A link that cannot be used is a
    410 problem (``link_unusable``, with ``kind`` and ``renewable``), as everywhere else."""
    session, process, signer = parts.signatures.open_link(body.link, _visitor(request))
    return JSONResponse(
        {"session_token": session, "status": parts.signatures.page_status(process, signer)}
    )


@router.post("/sign/{token}/renew", response_class=HTMLResponse)
def renew(token: str, parts: SignaturesDep) -> HTMLResponse:
    try:
        parts.signatures.renew_link(token)
        title, message, status = (
            "A new link is on its way",
            "We emailed a new link to the address the sender gave for you.",
            200,
        )
    except SealpostError as exc:
        title, message, status = "No new link", exc.message, exc.status
    html = _templates.get_template("sign_error.html").render(
        title=title,
        message=message,
        renew_url=None,
        asset_base=ASSET_BASE,
        config_json=_config_json({"post_message_origins": []}),
    )
    return HTMLResponse(html, status_code=status, headers=_headers([]))


# -- the page's JSON API ---------------------------------------------------------------------

SessionHeader = Annotated[str | None, Header(alias="X-Signing-Session")]


def _session(parts: SignaturesParts, token: str | None) -> tuple[SignatureProcess, Signer]:
    return parts.signatures.session(token)


def _state(parts: SignaturesParts, process: SignatureProcess, signer: Signer) -> dict[str, Any]:
    otp_state = None
    code = parts.signatures.challenge(process, signer)
    if code is not None and code.expires_at is not None and code.sent_to:
        otp_state = {
            "sent_to": mask(code.sent_to, code.channel),
            "channel": code.channel,
            "expires_at": code.expires_at.isoformat(),
            "attempts_left": code.attempts_left,
        }
    status = parts.signatures.page_status(process, signer)
    message = None
    if status == "signing_pending":
        message = (
            "The timestamp authority is unreachable; your signature is recorded and will be "
            "applied as soon as it is back."
        )
    elif status == "waiting":
        message = "It is not your turn yet: you will get an email when it is."
    elif status == "closed":
        message = parts.signatures.ended_message(process)
    return {"status": status, "otp": otp_state, "message": message}


@router.get(f"{API_BASE}/state")
def state(parts: SignaturesDep, session: SessionHeader = None) -> dict[str, Any]:
    process, signer = _session(parts, session)
    return _state(parts, process, signer)


@router.get(f"{API_BASE}/documents/{{number}}/pages/{{page}}.png")
async def page_image(
    number: int, page: int, parts: SignaturesDep, session: SessionHeader = None
) -> Response:
    process, _signer = await run_in_threadpool(_session, parts, session)
    data = await run_in_threadpool(parts.signatures.page_png, process, number, page)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.post(f"{API_BASE}/otp")
def send_code(
    request: Request, parts: SignaturesDep, session: SessionHeader = None
) -> dict[str, Any]:
    process, signer = _session(parts, session)
    assert session is not None  # _session refused a page without one
    sent_to, expires_at = parts.signatures.send_otp(
        process, signer, _visitor(request), session=session
    )
    channel = "sms" if signer.identification == "sms_otp" else "email"
    return {"sent_to": sent_to, "channel": channel, "expires_at": expires_at.isoformat()}


@router.post(f"{API_BASE}/otp/verify")
def verify_code(
    body: CodeIn, request: Request, parts: SignaturesDep, session: SessionHeader = None
) -> JSONResponse:
    """A wrong code is a 422 problem (``wrong_code``, with ``attempts_left``)."""
    process, signer = _session(parts, session)
    assert session is not None  # _session refused a page without one
    parts.signatures.verify_otp(process, signer, body.code, _visitor(request), session=session)
    return JSONResponse({"status": "ready"})


@router.post(f"{API_BASE}/view", status_code=204)
def viewed(request: Request, parts: SignaturesDep, session: SessionHeader = None) -> Response:
    process, signer = _session(parts, session)
    parts.signatures.viewed(process, signer, _visitor(request))
    return Response(status_code=204)


@router.post(f"{API_BASE}/sign")
def sign(
    body: SignIn, request: Request, parts: SignaturesDep, session: SessionHeader = None
) -> JSONResponse:
    process, signer = _session(parts, session)
    outcome = parts.signatures.sign(
        process,
        signer,
        SignInput(body.consent, decode_png(body.image_png), body.typed),
        _visitor(request),
    )
    if outcome == "signed":
        return JSONResponse({"status": "signed"})
    process, signer = _session(parts, session)
    return JSONResponse(_state(parts, process, signer), status_code=202)


@router.post(f"{API_BASE}/decline")
def decline(
    body: DeclineIn, request: Request, parts: SignaturesDep, session: SessionHeader = None
) -> dict[str, str]:
    process, signer = _session(parts, session)
    parts.signatures.decline(process, signer, body.reason, _visitor(request))
    return {"status": "declined"}
