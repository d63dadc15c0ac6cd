"""Signature processes over REST: create, list, status and timeline, cancel, signing links,
the signed document, the sealed audit trail, the evidence; and the tenant's signing-page
settings (which sites may embed it).

Documents travel as base64 in JSON (one request, retry-safe with ``Idempotency-Key``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field, Strict, StrictBool, StrictInt

from sealpost.api import cursors
from sealpost.api.auth import TenantDep
from sealpost.api.cursors import Cursor
from sealpost.api.errors import problem_responses
from sealpost.api.text import (
    MAX_INTEGER,
    Base64,
    Choice,
    EmailAddress,
    Identifier,
    Moment,
    MultiLine,
    Origin,
    SingleLine,
)
from sealpost.db.full import StorageFull
from sealpost.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import format_optional_time
from sealpost.signatures.model import (
    DocumentRequest,
    FieldRequest,
    ProcessRequest,
    SignerRequest,
)
from sealpost.signatures.repository import PROCESS_STATUSES, SignatureProcess
from sealpost.signatures.service import SignatureService

router = APIRouter(
    prefix="/v1",
    tags=["signatures"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)


@dataclass(frozen=True)
class SignaturesParts:
    """What the signatures endpoints and the signing page use; built by the composition root."""

    signatures: SignatureService
    ledger: LedgerReader


async def signatures_parts(request: Request) -> SignaturesParts:
    parts: SignaturesParts = request.app.state.signatures
    return parts


SignaturesDep = Annotated[SignaturesParts, Depends(signatures_parts)]

MAX_PAGE = 100
BLANK_PAGE_PDF = (
    "JVBERi0xLjcKJeLjz9MKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4KZW5kb2JqCjIgMCBv"
    "YmoKPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFszIDAgUl0gL0NvdW50IDEgPj4KZW5kb2JqCjMgMCBvYmoKPDwgL1R5cGUg"
    "L1BhZ2UgL1BhcmVudCAyIDAgUiAvTWVkaWFCb3ggWzAgMCA1OTUgODQyXSA+PgplbmRvYmoKeHJlZgowIDQKMDAwMDAw"
    "MDAwMCA2NTUzNSBmIAowMDAwMDAwMDE1IDAwMDAwIG4gCjAwMDAwMDAwNjQgMDAwMDAgbiAKMDAwMDAwMDEyMSAwMDAw"
    "MCBuIAp0cmFpbGVyCjw8IC9TaXplIDQgL1Jvb3QgMSAwIFIgPj4Kc3RhcnR4cmVmCjE5MgolJUVPRgo="
)
"""A blank A4 page: the example document of the OpenAPI document (it can be sent as is)."""
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A JSON number, finite (JSON has no NaN; Python's parser would still read one)."""


class FieldIn(BaseModel):
    document: StrictInt = Field(0, ge=0, le=MAX_INTEGER, description="Index in `documents`.")
    page: StrictInt | None = Field(
        None, ge=1, le=MAX_INTEGER, description="1-based page (with `box`)."
    )
    box: tuple[Finite, Finite, Finite, Finite] | None = Field(
        None, description="x1, y1, x2, y2 in PDF points from the page's bottom-left corner."
    )
    anchor: SingleLine | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="Label N of a `{{signature:N}}` text in the PDF: the field goes there.",
    )


class SignerIn(BaseModel):
    name: SingleLine = Field(min_length=1, max_length=200)
    email: EmailAddress = Field(
        description="Where the invitation (a certified email) and the codes go."
    )
    phone: str | None = Field(
        None,
        max_length=32,
        pattern=r"^\+?[0-9 ().-]{3,31}$",
        description=(
            "For SMS codes (identification sms_otp, where an SMS operator is configured): "
            "E.164, with + and the country code, e.g. +34 600 111 222."
        ),
    )
    role: Literal["signer", "approver", "viewer", "cc"] = "signer"
    order: StrictInt = Field(1, ge=1, le=100, description="Sequential: lower orders sign first.")
    identification: Literal["email_otp", "sms_otp", "none"] = "email_otp"
    fields: list[FieldIn] = Field(default_factory=list, max_length=20)


class DocumentIn(BaseModel):
    name: SingleLine = Field(min_length=1, max_length=200)
    content: Base64 = Field(description="The PDF, base64.")


class ProcessIn(BaseModel):
    title: SingleLine = Field(min_length=1, max_length=300)
    message: MultiLine = Field("", max_length=5000)
    documents: list[DocumentIn] = Field(min_length=1, max_length=20)
    signers: list[SignerIn] = Field(min_length=1, max_length=50)
    signing_order: Literal["sequential", "parallel"] = "sequential"
    expires_at: Moment | None = None
    reminder_hours: list[Finite] = Field(
        default_factory=list,
        max_length=10,
        description="Hours after the invitation at which to remind, e.g. [24, 72].",
    )
    consent_text: MultiLine | None = Field(None, max_length=5000)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "title": "Repair quote 4711",
                    "message": "Please sign the repair quote.",
                    "documents": [{"name": "quote.pdf", "content": BLANK_PAGE_PDF}],
                    "signers": [
                        {
                            "name": "Jane Customer",
                            "email": "jane@customer.example",
                            "fields": [{"document": 0, "page": 1, "box": [50, 50, 250, 110]}],
                        }
                    ],
                }
            ]
        }
    }


class CancelIn(BaseModel):
    reason: MultiLine | None = Field(None, max_length=2000)


class LinkOut(BaseModel):
    url: str
    expires_at: datetime


class SigningSettings(BaseModel):
    frame_ancestors: list[Origin] = Field(
        default_factory=list,
        max_length=20,
        description="Origins allowed to embed the signing page (iframe) and to receive its "
        "postMessage events, e.g. https://crm.example.com.",
    )
    allow_active_content: StrictBool = Field(
        False,
        description="Accept PDFs with active content (JavaScript, actions that open programs, "
        "files or web addresses on their own, XFA forms, executable attachments...; "
        "docs/signatures.md) instead of refusing them with 422 active_content; what was found "
        "is recorded in the evidence and the audit trail. A PUT without it sets it to false.",
    )

    model_config = {
        "json_schema_extra": {"examples": [{"frame_ancestors": ["https://crm.example.com"]}]}
    }


def _decode(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not base64") from None


def process_body(
    parts: SignaturesParts, process: SignatureProcess, *, timeline: bool = False
) -> dict[str, Any]:
    base = f"/v1/signatures/{process.id}"
    body: dict[str, Any] = {
        "id": process.id,
        "title": process.title,
        "message": process.message,
        "status": process.status,
        "signing_order": process.signing_order,
        "created_at": format_optional_time(process.created_at),
        "expires_at": format_optional_time(process.expires_at),
        "ended_at": format_optional_time(process.ended_at),
        "ended_reason": process.ended_reason,
        "documents": [
            {
                "number": d.number,
                "name": d.name,
                "pages": len(d.page_sizes),
                "sha256_original": d.original_sha256,
                "sha256_current": d.current_sha256,
                "url": f"{base}/document.pdf?document={d.number}",
            }
            for d in process.documents
        ],
        "signers": [
            {
                "id": s.id,
                "name": s.name,
                "email": s.email,
                "role": s.role,
                "order": s.sign_order,
                "identification": s.identification,
                "status": s.status,
                "notified_at": format_optional_time(s.notified_at),
                "viewed_at": format_optional_time(s.viewed_at),
                "identified_at": format_optional_time(s.identified_at),
                "signed_at": format_optional_time(s.signed_at),
            }
            for s in process.signers
        ],
        "audit_url": f"{base}/audit.pdf",
        "evidence_url": f"{base}/evidence",
    }
    if timeline:
        body["timeline"] = [
            {
                "record_id": e.record_id,
                "event": e.event,
                "time": format_optional_time(e.event_time),
                "sealed": e.sealed,
                "details": e.record.get("details", {}),
                "reasons": e.record.get("reasons", []),
            }
            for e in parts.signatures.repo.timeline(process.tenant_id, process.id)
        ]
    return body


@router.post(
    "/signatures",
    status_code=201,
    responses={
        200: {"description": "An Idempotency-Key matched an earlier request: its process."},
        **problem_responses(Conflict),
    },
)
def create(
    body: ProcessIn,
    parts: SignaturesDep,
    tenant: TenantDep,
    response: Response,
    idempotency_key: Annotated[
        SingleLine | None,
        Header(max_length=200, description="Retry-safe creation: same key, same answer."),
    ] = None,
) -> dict[str, Any]:
    """Start a signature process; the first signers get their invitation at once."""
    request = ProcessRequest(
        title=body.title,
        message=body.message,
        documents=tuple(
            DocumentRequest(d.name, _decode(d.content, f"documents[{i}].content"))
            for i, d in enumerate(body.documents)
        ),
        signers=tuple(
            SignerRequest(
                name=s.name,
                email=s.email,
                phone=s.phone,
                role=s.role,
                order=s.order,
                identification=s.identification,
                fields=tuple(FieldRequest(f.document, f.page, f.box, f.anchor) for f in s.fields),
            )
            for s in body.signers
        ),
        signing_order=body.signing_order,
        expires_at=body.expires_at.astimezone(UTC)
        if body.expires_at and body.expires_at.tzinfo
        else body.expires_at,
        reminder_hours=tuple(body.reminder_hours),
        consent_text=body.consent_text,
        idempotency_key=idempotency_key,
        request_sha256=hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest(),
    )
    process, created = parts.signatures.create(tenant, request)
    if not created:
        response.status_code = 200
    return process_body(parts, process)


@router.get("/signatures")
def list_processes(
    parts: SignaturesDep,
    tenant: TenantDep,
    status: Annotated[
        Annotated[str, Choice(PROCESS_STATUSES, empty=True)] | None,
        Query(description=f"One of {', '.join(PROCESS_STATUSES)}; empty: any."),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Newest first."""
    found = parts.signatures.repo.page(
        tenant.id,
        status=status or None,
        before=cursors.decode(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, more = found[:limit], len(found) > limit
    return {
        "items": [process_body(parts, p) for p in page],
        "next_cursor": cursors.encode(page[-1].created_at, page[-1].id) if more else None,
    }


@router.get("/signatures/{process_id}")
def get_process(process_id: Identifier, parts: SignaturesDep, tenant: TenantDep) -> dict[str, Any]:
    """Status, signers, documents and the timeline of evidence."""
    return process_body(parts, parts.signatures.get(tenant.id, process_id), timeline=True)


@router.post("/signatures/{process_id}/cancel", responses=problem_responses(Conflict))
def cancel(
    process_id: Identifier,
    parts: SignaturesDep,
    tenant: TenantDep,
    body: CancelIn | None = None,
) -> dict[str, Any]:
    process = parts.signatures.cancel(tenant.id, process_id, body.reason if body else None)
    return process_body(parts, process)


@router.post(
    "/signatures/{process_id}/signers/{signer_id}/link",
    response_model=LinkOut,
    responses=problem_responses(Conflict),
)
def signing_link(
    process_id: Identifier, signer_id: Identifier, parts: SignaturesDep, tenant: TenantDep
) -> LinkOut:
    """A fresh single-use link for embedding the signing page (a locked signer gets new
    code attempts: the tenant vouches for them)."""
    process = parts.signatures.get(tenant.id, process_id)
    signer = process.signer(signer_id)
    if signer is None:
        raise NotFound(f"no signer {signer_id} in this process")
    token, expires_at = parts.signatures.new_link(process, signer, unlock=True, end_sessions=True)
    return LinkOut(url=parts.signatures.link_url(token), expires_at=expires_at)


@router.get(
    "/signatures/{process_id}/document.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def document_pdf(
    process_id: Identifier,
    parts: SignaturesDep,
    tenant: TenantDep,
    document: Annotated[int, Query(ge=0, le=MAX_INTEGER)] = 0,
) -> Response:
    """The document's current revision: every signature so far (and, once completed, the
    document timestamp)."""
    process = parts.signatures.get(tenant.id, process_id)
    found, data = parts.signatures.document_pdf(process, document)
    name = found.name if found.name.lower().endswith(".pdf") else f"{found.name}.pdf"
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": _disposition(name),
            "X-Sealpost-SHA256": found.current_sha256,
        },
    )


@router.get(
    "/signatures/{process_id}/audit.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(Conflict)},
)
def audit_pdf(process_id: Identifier, parts: SignaturesDep, tenant: TenantDep) -> Response:
    """The sealed audit trail (kept once completed; made on request before)."""
    process = parts.signatures.get(tenant.id, process_id)
    return Response(
        parts.signatures.audit_pdf(process),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="audit-{process.id}.pdf"'},
    )


@router.get("/signatures/{process_id}/evidence")
def evidence(
    process_id: Identifier,
    parts: SignaturesDep,
    tenant: TenantDep,
    wait: Annotated[float, Query(ge=0, le=10)] = 0,
) -> dict[str, Any]:
    """Every record's evidence bundle; records not sealed yet are listed as pending."""
    process = parts.signatures.get(tenant.id, process_id)
    entries = parts.signatures.repo.timeline(tenant.id, process.id)
    bundles, pending = parts.ledger.bundles([e.record_id for e in entries], tenant.id, wait)
    return {"signature_process_id": process.id, "bundles": bundles, "pending": pending}


@router.get("/settings/signing", response_model=SigningSettings)
def get_settings(parts: SignaturesDep, tenant: TenantDep) -> SigningSettings:
    repo = parts.signatures.repo
    return SigningSettings(
        frame_ancestors=repo.frame_ancestors(tenant.id),
        allow_active_content=repo.allow_active_content(tenant.id),
    )


@router.put("/settings/signing", response_model=SigningSettings)
def put_settings(body: SigningSettings, parts: SignaturesDep, tenant: TenantDep) -> SigningSettings:
    """Which sites may embed the signing page: exact origins (scheme://host[:port]); whether
    documents with active content are accepted.  The whole object is replaced."""
    origins = list(dict.fromkeys(body.frame_ancestors))
    parts.signatures.repo.set_signing_settings(
        tenant.id,
        frame_ancestors=origins,
        allow_active_content=body.allow_active_content,
        now=datetime.now(UTC),
    )
    return SigningSettings(frame_ancestors=origins, allow_active_content=body.allow_active_content)


def _disposition(name: str) -> str:
    """attachment; an ASCII filename for every client, the exact one in RFC 5987 form."""
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "-_. ") else "_" for c in name)[
        :150
    ]
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name[:150], safe='')}"
