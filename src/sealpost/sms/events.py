"""The events certified SMS emit (``sealpost.sms.*``), and which evidence records imply them.

One event per change of a message's status: accepted, submitted (the operator took every
segment), then exactly one of delivered, undelivered, failed or unconfirmed.  Registered in
:data:`sealpost.events.registry.REGISTRY` when the package is imported.
"""

from __future__ import annotations

from typing import Any

from sealpost.events.registry import (
    REGISTRY,
    EventKind,
    NewEvent,
    SubjectType,
    new_event,
    record_reference,
)
from sealpost.ledger.records import EvidenceRecord, format_time

KINDS: tuple[EventKind, ...] = (
    EventKind(
        "sealpost.sms.accepted",
        "sms",
        "Sealpost durably stored the SMS (SubmissionAcceptance).",
        opens_subject=True,
    ),
    EventKind(
        "sealpost.sms.submitted",
        "sms",
        "The operator took every segment (RelayToNonERDS); receipts decide the rest.",
    ),
    EventKind(
        "sealpost.sms.delivered",
        "sms",
        "The operator reported every segment delivered to the handset (DeliveryReported).",
        terminal=True,
    ),
    EventKind(
        "sealpost.sms.undelivered",
        "sms",
        "A segment's final receipt said undelivered, expired or rejected (NonDelivery).",
        terminal=True,
    ),
    EventKind(
        "sealpost.sms.failed",
        "sms",
        "The operator refused the SMS, e.g. an invalid destination (RelayToNonERDSFailure), "
        "or it was not taken within its validity (NonDelivery, expired_in_queue).",
        terminal=True,
    ),
    EventKind(
        "sealpost.sms.unconfirmed",
        "sms",
        "No final receipt for every segment in time (DeliveryUnconfirmed); not delivered.",
        terminal=True,
    ),
    EventKind(
        "sealpost.sms.replied",
        "sms",
        "The recipient answered the SMS (a mobile-originated message; ReplyReceived).",
    ),
    EventKind(
        "sealpost.sms.opted_out",
        "sms",
        "The recipient answered an opt-out keyword (STOP, UNSUBSCRIBE, BAJA...): the number "
        "is on the tenant's "
        "opt-out list (ReplyReceived with opt_out: true).",
    ),
)

_TYPES = {
    "SubmissionAcceptance": ("sealpost.sms.accepted", "queued"),
    "RelayToNonERDS": ("sealpost.sms.submitted", "submitted"),
    "DeliveryReported": ("sealpost.sms.delivered", "delivered"),
    "NonDelivery": ("sealpost.sms.undelivered", "undelivered"),
    "RelayToNonERDSFailure": ("sealpost.sms.failed", "failed"),
    "DeliveryUnconfirmed": ("sealpost.sms.unconfirmed", "unconfirmed"),
}


def _reply_event(record: EvidenceRecord) -> NewEvent:
    reply = record.details.get("reply")
    reply = reply if isinstance(reply, dict) else {}
    opt_out = bool(reply.get("opt_out"))
    data: dict[str, Any] = {
        "sms_id": record.subject.id,
        "reply_id": reply.get("reply_id"),
        **record_reference(record),
        "from": record.sender.address if record.sender is not None else None,
        "to": reply.get("destination"),
        "opt_out": opt_out,
        "received_at": format_time(record.event_time),
    }
    if reply.get("keyword"):
        data["keyword"] = reply["keyword"]
    if record.content is not None:
        data["content"] = {"sha256": record.content.sha256, "size": record.content.size}
    return new_event(
        tenant_id=record.tenant_id,
        type="sealpost.sms.opted_out" if opt_out else "sealpost.sms.replied",
        subject_type="sms",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


def _from_sms(record: EvidenceRecord) -> NewEvent | None:
    if record.event.name == "ReplyReceived":
        return _reply_event(record)
    found = _TYPES.get(record.event.name)
    if found is None:
        return None
    type_, status = found
    if record.event.name == "NonDelivery" and record.details.get("status") == "failed":
        type_, status = "sealpost.sms.failed", "failed"  # expired in the queue, never taken
    data: dict[str, Any] = {
        "sms_id": record.subject.id,
        "status": status,
        **record_reference(record),
    }
    if record.recipient is not None:
        data["to"] = record.recipient.address
    if record.reasons:
        data["reasons"] = [r.to_json() for r in record.reasons]
    segments = record.details.get("segments")
    if isinstance(segments, list):
        data["segments"] = segments
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type="sms",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


REGISTRY.register(KINDS, (SubjectType("sms", "sms", _from_sms),))
