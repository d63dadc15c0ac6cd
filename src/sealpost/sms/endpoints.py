"""Certified SMS over REST: send, preview, status with segments, receipts and evidence.

``POST /v1/sms`` answers 201 only once the message and its SubmissionAcceptance are committed;
an ``Idempotency-Key`` makes a retried POST return the first answer (200) instead of sending
twice, and the same key with another request is a 409.  ``POST /v1/sms/preview`` tells the
encoding and segments (what the operator will bill) without sending anything.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.text import MAX_INTEGER, SingleLine
from sealpost.certificates.secrets import accepted_with_secret
from sealpost.db.full import StorageFull
from sealpost.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.ledger.records import format_optional_time, format_time
from sealpost.sms.certificates import SmsCertificates
from sealpost.sms.model import InvalidPhoneNumber, NumberOptedOut, Sms
from sealpost.sms.replies import SmsReplies
from sealpost.sms.repository import SmsRepository
from sealpost.sms.schemas import (
    OptOutOut,
    OptOutPage,
    Preview,
    PreviewRequest,
    SegmentOut,
    SmsDetail,
    SmsOut,
    SmsReplyList,
    SmsReplyOut,
    SmsRequest,
)
from sealpost.sms.service import SmsService

router = APIRouter(
    prefix="/v1",
    tags=["sms"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)


@dataclass(frozen=True)
class SmsParts:
    """What the SMS endpoints use; built by the composition root."""

    service: SmsService
    repository: SmsRepository
    certificates: SmsCertificates
    replies: SmsReplies | None = None
    """Answers and opt-outs (None: not available)."""


async def sms_parts(request: Request) -> SmsParts:
    parts: SmsParts = request.app.state.sms
    return parts


SmsDep = Annotated[SmsParts, Depends(sms_parts)]


def _out(sms: Sms, replayed: bool = False) -> dict[str, object]:
    return {
        "id": sms.id,
        "status": sms.status,
        "to": sms.recipient,
        "sender": sms.sender,
        "encoding": sms.encoding,
        "segment_count": sms.segment_count,
        # an access-secret text's sealed digest is a commitment under a nonce the tenant
        # never gets (sms.service.text_commitment): no plain digest to brute-force here
        "text_sha256": None if sms.text_nonce else sms.text_sha256,
        "submitted_at": format_time(sms.submitted_at),
        "updated_at": format_time(sms.updated_at),
        "relayed_at": format_optional_time(sms.relayed_at),
        "final_at": format_optional_time(sms.final_at),
        "attempts": sms.attempts,
        "next_attempt_at": format_optional_time(sms.next_attempt_at)
        if sms.status == "queued"
        else None,
        "last_error": sms.last_error,
        "replayed": replayed,
    }


@router.post(
    "/sms",
    status_code=201,
    response_model=SmsOut,
    responses={
        200: {"model": SmsOut, "description": "An Idempotency-Key matched an earlier send."},
        **problem_responses(Conflict, InvalidInput, InvalidPhoneNumber, NumberOptedOut),
    },
)
def send_sms(
    body: SmsRequest,
    parts: SmsDep,
    tenant: TenantDep,
    response: Response,
    idempotency_key: Annotated[
        SingleLine | None,
        Header(max_length=200, description="Retry-safe sends: same key, same answer."),
    ] = None,
) -> SmsOut:
    """Send a certified SMS: accepted once durable, then submitted to the operator."""
    accepted = parts.service.accept(
        tenant_id=tenant.id,
        to=body.to,
        text=body.text,
        sender=body.sender,
        details=body.details,
        identification={"method": "api-key", "tenant": tenant.name},
        respect_opt_out=body.respect_opt_out,
        idempotency_key=idempotency_key,
        request_sha256=hashlib.sha256(
            json.dumps(body.model_dump(), sort_keys=True).encode()
        ).hexdigest(),
    )
    if accepted.replayed:
        response.status_code = 200
    return SmsOut(**_out(accepted.sms, accepted.replayed))


@router.post("/sms/preview", response_model=Preview)
def preview_sms(body: PreviewRequest, parts: SmsDep, tenant: TenantDep) -> Preview:
    """Encoding (GSM-7 or UCS-2), size and segments of a text, without sending it."""
    split = parts.service.preview(body.text)
    return Preview(
        encoding=split.encoding, units=split.units, segments=split.segments, parts=list(split.parts)
    )


@router.get("/sms/{sms_id:uuid}", response_model=SmsDetail, responses=problem_responses(NotFound))
def get_sms(sms_id: uuid.UUID, parts: SmsDep, tenant: TenantDep) -> SmsDetail:
    """Status, each segment with its operator id and receipt, and the evidence in order.

    The id is a UUID in the route itself, so ``/v1/sms/preview`` is never taken for one."""
    sms = parts.repository.get(str(sms_id), tenant.id)
    if sms is None:
        raise NotFound(f"no SMS {sms_id}")
    segments = [
        SegmentOut(
            number=s.number + 1,
            state=s.state,
            operator_message_id=s.message_id,
            operator_status=s.status,
            reported_at=format_optional_time(s.reported_at),
            report_sha256=s.report_sha256,
        )
        for s in parts.repository.segments(sms.id)
    ]
    timeline = parts.repository.timeline(tenant.id, sms.id)
    withheld = accepted_with_secret((e.event, e.record) for e in timeline)
    evidence = [
        {
            "record_id": e.record_id,
            "event": e.event,
            "event_time": format_time(e.event_time),
            "sealed": e.sealed,
            "evidence": f"/v1/evidence/{e.record_id}",
            "reasons": e.record.get("reasons", []),
        }
        for e in timeline
    ]
    certificates = [
        {
            "version": cert.version,
            "sha256": cert.sha256,
            "size": cert.size,
            "issued_at": format_time(cert.created_at),
            "record_id": cert.record_id,
            "path": f"/v1/sms/{sms.id}/certificate.pdf?version={cert.version}",
        }
        for cert in parts.certificates.versions(sms.id)
    ]
    return SmsDetail(
        **_out(sms),
        text=None if withheld else sms.text,
        text_withheld=withheld,
        details=sms.details,
        segments=segments,
        evidence=evidence,
        certificates=certificates,
    )


@router.get(
    "/sms/{sms_id:uuid}/certificate.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(NotFound, Conflict)},
)
def sms_certificate(
    sms_id: uuid.UUID,
    parts: SmsDep,
    tenant: TenantDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_INTEGER, description="Default: the latest.")
    ] = None,
) -> Response:
    """The sealed evidence certificate (PAdES), the latest version or ``version``; 409 while
    the SMS is not final yet, or its last records wait for their seal (retry); 404 for a
    version that was not issued."""
    sms = parts.repository.get(str(sms_id), tenant.id)
    if sms is None:
        raise NotFound(f"no SMS {sms_id}")
    return Response(
        parts.certificates.latest(sms, version),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-sms-{sms.id}.pdf"'},
    )


def _replies(parts: SmsParts) -> SmsReplies:
    if parts.replies is None:
        raise NotFound("SMS answers are not available on this Sealpost")
    return parts.replies


@router.get(
    "/sms/{sms_id:uuid}/replies", response_model=SmsReplyList, responses=problem_responses(NotFound)
)
def sms_replies(sms_id: uuid.UUID, parts: SmsDep, tenant: TenantDep) -> SmsReplyList:
    """The answers (mobile-originated messages) matched to this SMS, oldest first."""
    sms = parts.repository.get(str(sms_id), tenant.id)
    if sms is None:
        raise NotFound(f"no SMS {sms_id}")
    items = [
        SmsReplyOut(
            id=r.id,
            received_at=format_time(r.received_at),
            phone=r.phone,
            destination=r.destination,
            text=r.text,
            text_sha256=r.text_sha256,
            opt_out=r.opt_out,
            provider=r.provider,
            raw_sha256=r.raw_sha256,
            record_id=r.record_id,
            evidence=f"/v1/evidence/{r.record_id}",
        )
        for r in _replies(parts).replies(tenant.id, sms.id)
    ]
    return SmsReplyList(sms_id=sms.id, items=items)


@router.get("/sms/opt-outs", response_model=OptOutPage)
def sms_opt_outs(
    parts: SmsDep,
    tenant: TenantDep,
    after: Annotated[
        SingleLine | None,
        Query(max_length=40, description="The last phone of the previous page (next_after)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> OptOutPage:
    """Numbers that answered an opt-out keyword (STOP, BAJA, ...) to one of the tenant's
    SMS, by number.  ``POST /v1/sms`` with ``respect_opt_out: true`` refuses them (409
    ``sms_opted_out``)."""
    found = _replies(parts).opt_outs(tenant.id, limit + 1, after or None)
    page = found[:limit]
    return OptOutPage(
        items=[
            OptOutOut(
                phone=o.phone,
                opted_out_at=format_time(o.opted_out_at),
                keyword=o.keyword,
                sms_id=o.sms_id,
                reply_id=o.reply_id,
            )
            for o in page
        ],
        next_after=page[-1].phone if len(found) > limit else None,
    )
