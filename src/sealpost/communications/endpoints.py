"""Certified email over REST: send, list, status and timeline, certificate, original, evidence.

``POST /v1/communications`` produces the same records as an SMTP submission: one
communication per recipient, each with its SubmissionAcceptance, committed before the 201.
An ``Idempotency-Key`` makes a retried POST return the first answer (200) instead of sending
twice; the same key with another message is a 409.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, StrictBool

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
    SingleLine,
)
from sealpost.certificates.secrets import AccessSecretWithheld, accepted_with_secret
from sealpost.communications.certificates import CertificateService
from sealpost.communications.contents import ContentStore
from sealpost.communications.email.addresses import AddressError, checked_address
from sealpost.communications.email.mime import (
    HeaderError,
    build_message,
    describe_message,
    new_message_id,
)
from sealpost.communications.email.refusals import ContentRefused
from sealpost.communications.email.submission import (
    Accepted,
    DeadlineRefused,
    PickupRefused,
    SenderNotAllowed,
    SubmissionRequest,
    SubmissionService,
)
from sealpost.communications.ports import DELIVERY_MODES, PickupDesk, PickupRequest
from sealpost.communications.reply_repository import ReplyRepository
from sealpost.communications.repository import STATUSES, Communication, CommunicationRepository
from sealpost.communications.tracking.service import TrackingService
from sealpost.config import Settings
from sealpost.db.full import StorageFull
from sealpost.deadlines.calendars import UnknownCalendar, normalised_code
from sealpost.deadlines.repository import DeadlineRepository
from sealpost.deadlines.rules import DeadlineRule
from sealpost.deadlines.schemas import DeadlineRuleBody
from sealpost.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import Subject, format_optional_time, format_time
from sealpost.tenants.repository import Tenant
from sealpost.tenants.senders import SenderRepository

router = APIRouter(
    prefix="/v1",
    tags=["communications"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)


@dataclass(frozen=True)
class CommunicationsParts:
    """What the communications endpoints use; built by the composition root."""

    communications: CommunicationRepository
    contents: ContentStore
    senders: SenderRepository
    submissions: SubmissionService
    certificates: CertificateService
    ledger: LedgerReader
    settings: Settings
    pickup: PickupDesk | None = None
    tracking: TrackingService | None = None
    """Open and click tracking (``communications.tracking``); None: not offered."""
    replies: ReplyRepository | None = None
    """Reply capture (``reply_endpoints``); None: not available."""
    deadlines: DeadlineRepository | None = None


async def communications_parts(request: Request) -> CommunicationsParts:
    """Async (here and in the other domains' ``*_parts``): it only reads the app's state, and
    FastAPI runs a sync dependency in a worker thread (a hand-off each, per request)."""
    parts: CommunicationsParts = request.app.state.communications
    return parts


CommunicationsDep = Annotated[CommunicationsParts, Depends(communications_parts)]

MAX_PAGE = 200
MAX_RECIPIENTS = 100


class Attachment(BaseModel):
    filename: SingleLine = Field(min_length=1, max_length=255)
    content_type: str = Field(
        "application/octet-stream", pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
    )
    content: Base64 = Field(description="The file's bytes.")


class PickupBody(BaseModel):
    """Registered pickup choices (``delivery: pickup``); unset ones take the tenant's
    defaults (``PUT /v1/settings/pickup``)."""

    identification: Annotated[str, Choice(("email_otp", "sms_otp", "challenge"))] | None = Field(
        None, description="email_otp (default), sms_otp (needs phone), challenge."
    )
    consent: Annotated[str, Choice(("consent", "basic"))] | None = Field(
        None, description="consent (default): accept or reject before handover; basic: none."
    )
    policy: Annotated[str, Choice(("default", "es", "fr"))] | None = Field(
        None, description="The window: es (10 natural days), fr (15 days, sender hidden)."
    )
    phone: SingleLine | None = Field(
        None, max_length=20, description="E.164, for sms_otp and for a notice by SMS."
    )
    notice: list[Annotated[str, Choice(("email", "sms"))]] | None = Field(
        None,
        min_length=1,
        max_length=2,
        description='How the notice goes: ["email"] (default), ["sms"] (needs phone) or both.',
    )
    challenge_question: SingleLine | None = Field(None, max_length=300)
    challenge_answer: SingleLine | None = Field(
        None, max_length=300, description="Stored only as a hash; case and spacing ignored."
    )


def _pickup_request(body: PickupBody) -> PickupRequest:
    values = body.model_dump()
    notice = values.pop("notice")
    return PickupRequest(**values, notice=tuple(notice) if notice else None)


class SendRequest(BaseModel):
    """Either the parts of a message (Sealpost builds it) or a raw RFC 5322 message."""

    from_: EmailAddress | None = Field(
        None, alias="from", description="Sender address (parts form)."
    )
    to: list[EmailAddress] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    cc: list[EmailAddress] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    bcc: list[EmailAddress] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description="Recipients not shown in headers.",
    )
    subject: SingleLine | None = None
    text: MultiLine | None = None
    html: MultiLine | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    raw: Base64 | None = Field(
        None, min_length=4, description="A complete RFC 5322 message, base64."
    )
    recipients: list[EmailAddress] = Field(
        default_factory=list,
        max_length=MAX_RECIPIENTS,
        description="With raw: the envelope recipients (default: the To, Cc and Bcc headers; "
        "Bcc is removed from every delivered copy).",
    )
    delivery: Annotated[str, Choice(DELIVERY_MODES)] | None = Field(
        None,
        description="direct (relay to the recipient's server) or pickup (a notice; the content "
        "is handed over on the pickup page after identification); default: the tenant's.",
    )
    pickup: PickupBody | None = None
    capture_replies: StrictBool | None = Field(
        None,
        description="true: each communication gets its own reply address in Reply-To (beside "
        "the sender) and replies are recorded on it (GET /v1/communications/{id}/replies); "
        "false: none; default: the tenant's setting (PUT /v1/settings/replies). Direct "
        "delivery only.",
    )
    deadline: DeadlineRuleBody | None = Field(
        None,
        description="A legal term on each communication: N business or natural days from the "
        "delivery (direct), the handover or the acceptance (pickup), on a region's calendar "
        "(docs/deadlines.md). Computed and sealed (DeadlineSet) when that evidence is recorded.",
    )

    model_config = {
        "populate_by_name": True,
        "json_schema_extra": {
            "examples": [
                {
                    "from": "care@acme.example",
                    "to": ["jane@customer.example"],
                    "subject": "Your claim",
                    "text": "We have decided on your claim.",
                }
            ]
        },
    }


class CommunicationRef(BaseModel):
    id: str
    recipient: str
    status: str


class SendResult(BaseModel):
    submission_id: str
    message_id: str
    communications: list[CommunicationRef]
    replayed: bool = Field(description="True when an Idempotency-Key matched an earlier send.")


class CommunicationBody(BaseModel):
    id: str
    submission_id: str
    status: str
    via: str
    sender: str
    recipient: str
    subject: str | None
    message_id: str
    content_sha256: str
    content_size: int
    submitted_at: str
    updated_at: str
    delivered_at: str | None
    attempts: int
    next_attempt_at: str | None
    last_reply: str | None
    certificate_version: int


class CommunicationPage(BaseModel):
    items: list[CommunicationBody]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class TimelineEvent(BaseModel):
    record_id: str
    event: str
    event_time: str
    sealed: bool
    record: dict[str, Any]
    evidence: str = Field(description="Path of the record's evidence bundle.")


class CommunicationDetail(CommunicationBody):
    pickup: dict[str, Any] | None = Field(
        None, description="Registered pickup: state, notice, window and steps (else null)."
    )
    tracking: dict[str, Any] | None = Field(
        None,
        description="Open and click tracking, when the tenant had it on: hits and records of "
        "the pixel and of each link, apart from the timeline. Non-essential: mail clients "
        "preload images and scanners follow links, so never proof of reading.",
    )
    timeline: list[TimelineEvent]
    attempts_log: list[dict[str, Any]]
    certificates: list[dict[str, Any]]
    deadlines: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Legal terms on the communication: running, approaching or passed, with "
        "their last day, calendar and data version; waiting until their trigger is recorded.",
    )


def _body(c: Communication) -> dict[str, Any]:
    return {
        "id": c.id,
        "submission_id": c.submission_id,
        "status": c.status,
        "via": c.via,
        "sender": c.sender,
        "recipient": c.recipient,
        "subject": c.subject,
        "message_id": c.message_id,
        "content_sha256": c.content_sha256,
        "content_size": c.content_size,
        "submitted_at": format_time(c.submitted_at),
        "updated_at": format_time(c.updated_at),
        "delivered_at": format_optional_time(c.delivered_at),
        "attempts": c.attempts,
        "next_attempt_at": format_optional_time(c.next_attempt_at)
        if c.status == "queued"
        else None,
        "last_reply": c.last_reply,
        "certificate_version": c.certificate_version,
    }


def _b64(value: str, field: str) -> bytes:
    """``base64.b64decode(value, validate=True)`` without its ASCII copy of ``value`` (tens of
    MB for an attachment): ``binascii`` reads an ASCII ``str`` in place."""
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None


def _check_address(address: str, field: str) -> str:
    try:
        return checked_address(address)
    except AddressError as exc:
        raise InvalidInput(f"{field}: {exc.message}: {address[:100]!r}") from None


def _build(parts: CommunicationsParts, body: SendRequest) -> tuple[bytes, list[str], str]:
    """(raw message, envelope recipients, envelope sender) from either form."""
    if body.raw is not None:
        raw = _b64(body.raw, "raw")
        if not raw.strip():
            raise InvalidInput("raw is empty")
        if len(raw) > parts.settings.smtp_max_message_bytes:
            raise InvalidInput(f"raw is over {parts.settings.smtp_max_message_bytes} bytes")
        facts = describe_message(raw)
        recipients = body.recipients or [*facts.to, *facts.cc, *facts.bcc]
        if not recipients:
            raise InvalidInput("raw has no To, Cc or Bcc header: give the recipients")
        if facts.from_address is None:
            raise InvalidInput("raw has no From header")
        sender = facts.from_address
        return raw, [_check_address(r, "recipients") for r in recipients], sender
    if not body.from_:
        raise InvalidInput("from is required (or send a raw message)")
    recipients = [*body.to, *body.cc, *body.bcc]
    if not recipients:
        raise InvalidInput("at least one recipient (to, cc or bcc) is required")
    if body.text is None and body.html is None:
        raise InvalidInput("text or html is required")
    sender = _check_address(body.from_, "from")
    raw = build_message(
        sender=sender,
        to=[_check_address(a, "to") for a in body.to],
        cc=[_check_address(a, "cc") for a in body.cc],
        subject=body.subject or "",
        text=body.text,
        html=body.html,
        attachments=[
            (a.filename, a.content_type, _b64(a.content, f"attachments[{i}].content"))
            for i, a in enumerate(body.attachments)
        ],
        message_id=new_message_id(parts.settings.hostname),
    )
    if len(raw) > parts.settings.smtp_max_message_bytes:
        raise InvalidInput(f"the message is over {parts.settings.smtp_max_message_bytes} bytes")
    for address in body.bcc:
        _check_address(address, "bcc")
    return raw, recipients, sender


def _fingerprint(request: dict[str, Any]) -> str:
    """SHA-256 of the request as ``json.dumps(request, sort_keys=True)`` in UTF-8, hashed as
    it is written: the same digest, without the whole document (tens of MB with an
    attachment) as one string and again as bytes."""
    digest = hashlib.sha256()
    for chunk in json.JSONEncoder(sort_keys=True).iterencode(request):
        for start in range(0, len(chunk), 1 << 20):
            digest.update(chunk[start : start + (1 << 20)].encode())
    return digest.hexdigest()


def _result(parts: CommunicationsParts, accepted: Accepted) -> SendResult:
    refs = []
    for cid, rcpt in zip(accepted.communication_ids, accepted.recipients, strict=True):
        found = parts.communications.get(cid)
        refs.append(CommunicationRef(id=cid, recipient=rcpt, status=found.status if found else ""))
    return SendResult(
        submission_id=accepted.submission_id,
        message_id=accepted.message_id,
        communications=refs,
        replayed=accepted.replayed,
    )


def _deadline_rule(body: SendRequest) -> DeadlineRule:
    """The request's deadline rule on a known calendar (422 ``unknown_calendar`` before
    anything is accepted); whether the delivery records its trigger is checked with the
    delivery mode resolved (``SubmissionService``: a tenant's default may be pickup)."""
    assert body.deadline is not None
    rule = body.deadline.rule()
    return replace(rule, calendar=normalised_code(rule.calendar))


@router.post(
    "/communications",
    status_code=201,
    response_model=SendResult,
    responses={
        200: {
            "model": SendResult,
            "description": "An Idempotency-Key matched an earlier send: its first answer.",
        },
        **problem_responses(
            Conflict,
            InvalidInput,
            AddressError,
            HeaderError,
            SenderNotAllowed,
            ContentRefused,
            PickupRefused,
            UnknownCalendar,
            DeadlineRefused,
        ),
    },
)
def send(
    body: SendRequest,
    parts: CommunicationsDep,
    tenant: TenantDep,
    response: Response,
    idempotency_key: Annotated[
        SingleLine | None,
        Header(max_length=200, description="Retry-safe sends: same key, same answer."),
    ] = None,
) -> SendResult:
    """Send a certified email: one communication per recipient, accepted once durable."""
    raw, recipients, sender = _build(parts, body)
    identification = {"method": "api-key", "tenant": tenant.name}
    request = SubmissionRequest(
        tenant_id=tenant.id,
        via="api",
        mail_from=sender,
        recipients=tuple(recipients),
        raw=raw,
        identification=identification,
        details={"api": {"idempotency_key": idempotency_key}},
        idempotency_key=idempotency_key,
        request_sha256=_fingerprint(body.model_dump(by_alias=True)),
        sender_domains=parts.senders.sender_domains(tenant.id),
        delivery=body.delivery,
        pickup=_pickup_request(body.pickup) if body.pickup else None,
        reply_capture=body.capture_replies,
    )
    if body.pickup is not None and body.delivery == "direct":
        raise InvalidInput("pickup: options for a pickup, but delivery is direct")
    if body.capture_replies and (body.delivery == "pickup" or body.pickup is not None):
        raise InvalidInput("capture_replies: replies are captured for direct delivery only")
    if body.deadline is not None:
        rule = _deadline_rule(body)
        request = replace(request, details={**request.details, "deadline": rule.to_json()})
    accepted = parts.submissions.accept(request)  # a refusal raises (422) after its evidence
    if accepted.replayed:
        response.status_code = 200
    return _result(parts, accepted)


@router.get("/communications", response_model=CommunicationPage)
def list_communications(
    parts: CommunicationsDep,
    tenant: TenantDep,
    status: Annotated[
        list[Annotated[str, Choice(STATUSES, empty=True)]] | None,
        Query(description=f"Any of {', '.join(STATUSES)}; repeatable; empty: any."),
    ] = None,
    recipient: Annotated[
        SingleLine | None, Query(max_length=320, description="Exactly this address; empty: any.")
    ] = None,
    submitted_from: Annotated[Moment | None, Query(alias="from")] = None,
    submitted_to: Annotated[Moment | None, Query(alias="to")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """Newest first; failed or pending ones with ``?status=failed`` / ``?status=queued``."""
    items = parts.communications.search(
        tenant.id,
        status=[s for s in status or () if s],
        recipient=recipient or None,
        submitted_from=submitted_from.astimezone(UTC) if submitted_from else None,
        submitted_to=submitted_to.astimezone(UTC) if submitted_to else None,
        after=cursors.decode(cursor) if cursor else None,
        limit=limit + 1,
    )
    page, more = items[:limit], len(items) > limit
    # plain dicts: the response model validates them once (a model built here would be dumped
    # and validated again, per item)
    return {
        "items": [_body(c) for c in page],
        "next_cursor": cursors.encode(page[-1].submitted_at, page[-1].id) if more else None,
    }


def _owned(parts: CommunicationsParts, tenant: Tenant, communication_id: str) -> Communication:
    found = parts.communications.get(communication_id, tenant.id)
    if found is None:
        raise NotFound(f"no communication {communication_id}")
    return found


@router.get("/communications/{communication_id}", response_model=CommunicationDetail)
def get_communication(
    communication_id: Identifier, parts: CommunicationsDep, tenant: TenantDep
) -> CommunicationDetail:
    """Status, every evidence event in order, the delivery attempts and certificate versions."""
    c = _owned(parts, tenant, communication_id)
    timeline = [
        TimelineEvent(
            record_id=e.record_id,
            event=e.event,
            event_time=format_time(e.event_time),
            sealed=e.sealed,
            record=e.record,
            evidence=f"/v1/evidence/{e.record_id}",
        )
        for e in parts.communications.timeline(tenant.id, c.id)
    ]
    attempts = [
        {
            **a,
            "started_at": format_time(a["started_at"]),
            "finished_at": format_time(a["finished_at"]),
        }
        for a in parts.communications.attempts(c.id)
    ]
    certificates = [
        {
            "version": cert.version,
            "sha256": cert.sha256,
            "size": cert.size,
            "issued_at": format_time(cert.created_at),
            "record_id": cert.record_id,
        }
        for cert in parts.communications.certificates(c.id)
    ]
    pickup = parts.pickup.describe(tenant.id, c.id) if parts.pickup is not None else None
    tracking = parts.tracking.describe(tenant.id, c.id) if parts.tracking is not None else None
    return CommunicationDetail(
        **_body(c),
        pickup=pickup,
        tracking=tracking,
        timeline=timeline,
        attempts_log=attempts,
        certificates=certificates,
        deadlines=_deadlines(parts, tenant, c.id, timeline),
    )


def _deadlines(
    parts: CommunicationsParts, tenant: Tenant, cid: str, timeline: list[TimelineEvent]
) -> list[dict[str, Any]]:
    """The stored terms; a rule whose trigger is not recorded yet shows as ``waiting``."""
    found = (
        [d.to_json() for d in parts.deadlines.for_subject(tenant.id, "communication", cid)]
        if parts.deadlines is not None
        else []
    )
    if found:
        return found
    for entry in timeline:
        rule = entry.record.get("details", {}).get("deadline")
        if entry.event == "SubmissionAcceptance" and isinstance(rule, dict):
            return [{"status": "waiting", "rule": rule}]
    return []


@router.get(
    "/communications/{communication_id}/certificate.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(Conflict)},
)
def certificate(
    communication_id: Identifier,
    parts: CommunicationsDep,
    tenant: TenantDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_INTEGER, description="Default: the latest.")
    ] = None,
) -> Response:
    """The sealed evidence certificate (PAdES); 409 while delivery is still under way."""
    c = _owned(parts, tenant, communication_id)
    pdf = parts.certificates.latest(c, version)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="certificate-{c.id}.pdf"'},
    )


@router.get(
    "/communications/{communication_id}/original.eml",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}}, **problem_responses(AccessSecretWithheld)},
)
def original(communication_id: Identifier, parts: CommunicationsDep, tenant: TenantDep) -> Response:
    """The message exactly as submitted (its SHA-256 is the records' content.sha256); 403
    ``access_secret_withheld`` for Sealpost's own notices, invitations and codes, whose
    single-use link or code would let the sender act as the recipient."""
    c = _owned(parts, tenant, communication_id)
    timeline = parts.communications.timeline(tenant.id, c.id)
    if accepted_with_secret((e.event, e.record) for e in timeline):
        raise AccessSecretWithheld(
            f"communication {c.id} carried a single-use link or one-time code for its "
            "recipient: its bytes are sealed (SHA-256 in its evidence) but never served to the "
            "sender; the operator keeps them"
        )
    size, chunks = parts.contents.stream(c.content_sha256, of=Subject("communication", c.id))
    headers = {"Content-Disposition": f'attachment; filename="{c.id}.eml"'}
    if size is not None:
        headers["Content-Length"] = str(size)
    # streamed: a message of tens of MB is never held whole (issue 16, P6)
    return StreamingResponse(chunks, media_type="message/rfc822", headers=headers)


@router.get("/communications/{communication_id}/evidence")
def evidence(
    communication_id: Identifier,
    parts: CommunicationsDep,
    tenant: TenantDep,
    wait: Annotated[float, Query(ge=0, le=10, description="Seconds to wait for seals.")] = 0,
) -> dict[str, Any]:
    """Every record's evidence bundle; records not sealed yet are listed as pending."""
    c = _owned(parts, tenant, communication_id)
    entries = parts.communications.timeline(tenant.id, c.id)
    bundles, pending = parts.ledger.bundles([e.record_id for e in entries], tenant.id, wait)
    return {"communication_id": c.id, "bundles": bundles, "pending": pending}
