"""Replies over REST: the tenant's capture switch, a communication's replies and their bytes.

``PUT /v1/settings/replies`` turns reply capture on for every direct email of the tenant
(``POST /v1/communications`` may still choose per message with ``capture_replies``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.text import Choice, Identifier
from sealpost.certificates.secrets import AccessSecretWithheld, accepted_with_secret
from sealpost.communications.endpoints import CommunicationsDep, CommunicationsParts, _owned
from sealpost.communications.reply_repository import Reply, ReplyRepository
from sealpost.errors import NotFound, ServiceUnavailable, TooManyRequests, Unauthorized
from sealpost.ledger.records import format_time

router = APIRouter(
    prefix="/v1",
    tags=["replies"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable),
)


class ReplySettings(BaseModel):
    """Whether direct emails get a reply address (off by default)."""

    replies: Annotated[str, Choice(("capture", "off"))] = Field(
        "off",
        description="capture: every direct email gets Reply-To: <sender>, <its reply address>, "
        "and replies are recorded on it; off: no Reply-To is added.",
    )


class ReplyOut(BaseModel):
    id: str
    communication_id: str
    received_at: str
    sender: str = Field(description="The reply's From address (else its envelope sender).")
    envelope_from: str
    message_id: str | None
    subject: str | None
    sha256: str = Field(description="SHA-256 of the exact bytes received (the raw download).")
    size: int
    automatic: bool = Field(
        description="An out-of-office or other automatic answer (RFC 3834): not a reply."
    )
    automatic_reason: str | None
    matched_by: str = Field(
        description="reply_address (its signed address), in_reply_to or references."
    )
    malformed: bool = Field(description="Its MIME could not be read; the bytes are kept.")
    record_id: str
    evidence: str
    raw: str = Field(description="Path of the exact bytes (message/rfc822).")


class ReplyList(BaseModel):
    communication_id: str
    items: list[ReplyOut]


def _replies(parts: CommunicationsParts) -> ReplyRepository:
    if parts.replies is None:
        raise NotFound("reply capture is not available on this Sealpost")
    return parts.replies


def _out(reply: Reply) -> ReplyOut:
    return ReplyOut(
        id=reply.id,
        communication_id=reply.communication_id,
        received_at=format_time(reply.received_at),
        sender=reply.sender,
        envelope_from=reply.envelope_from,
        message_id=reply.message_id,
        subject=reply.subject,
        sha256=reply.content_sha256,
        size=reply.content_size,
        automatic=reply.automatic,
        automatic_reason=reply.automatic_reason,
        matched_by=reply.matched_by,
        malformed=reply.malformed,
        record_id=reply.record_id,
        evidence=f"/v1/evidence/{reply.record_id}",
        raw=f"/v1/communications/{reply.communication_id}/replies/{reply.id}/raw",
    )


@router.get("/settings/replies", response_model=ReplySettings)
def get_settings(parts: CommunicationsDep, tenant: TenantDep) -> ReplySettings:
    capture = _replies(parts).capture(tenant.id)
    return ReplySettings(replies="capture" if capture else "off")


@router.put("/settings/replies", response_model=ReplySettings)
def put_settings(body: ReplySettings, parts: CommunicationsDep, tenant: TenantDep) -> ReplySettings:
    """The whole object is replaced; it applies to messages submitted from now on."""
    _replies(parts).put_capture(tenant.id, body.replies == "capture")
    return body


@router.get(
    "/communications/{communication_id}/replies",
    response_model=ReplyList,
    responses=problem_responses(NotFound),
)
def list_replies(
    communication_id: Identifier, parts: CommunicationsDep, tenant: TenantDep
) -> ReplyList:
    """Every reply recorded for the communication, oldest first (automatic ones flagged)."""
    c = _owned(parts, tenant, communication_id)
    items = _replies(parts).list(tenant.id, c.id)
    return ReplyList(communication_id=c.id, items=[_out(r) for r in items])


@router.get(
    "/communications/{communication_id}/replies/{reply_id}/raw",
    response_class=Response,
    responses={
        200: {"content": {"message/rfc822": {}}},
        **problem_responses(NotFound, AccessSecretWithheld),
    },
)
def reply_raw(
    communication_id: Identifier, reply_id: Identifier, parts: CommunicationsDep, tenant: TenantDep
) -> Response:
    """The reply exactly as received (its SHA-256 is the record's ``content.sha256``); 403
    when it answers a message that carried a one-time code or link (a reply may quote it)."""
    c = _owned(parts, tenant, communication_id)
    repo = _replies(parts)
    reply = repo.get(tenant.id, c.id, reply_id)
    if reply is None:
        raise NotFound(f"no reply {reply_id} to communication {c.id}")
    timeline = parts.communications.timeline(tenant.id, c.id)
    if accepted_with_secret((e.event, e.record) for e in timeline):
        raise AccessSecretWithheld(
            f"communication {c.id} carried a single-use link or one-time code: a reply to it "
            "may quote it, so its bytes are not served to the sender (the operator keeps them)"
        )
    return Response(
        repo.raw(reply),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="reply-{reply.id}.eml"'},
    )
