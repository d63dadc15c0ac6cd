"""The events signature processes emit (``sealpost.signature.*``), one per evidence record
of a step.  Registered in :data:`sealpost.events.registry.REGISTRY` when the package is imported.
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
from sealpost.ledger.records import EvidenceRecord

KINDS: tuple[EventKind, ...] = (
    EventKind(
        "sealpost.signature.created",
        "signature_process",
        "A signature process was created (ProcessCreated); its first signers are invited next.",
        opens_subject=True,
    ),
    EventKind(
        "sealpost.signature.signer_notified",
        "signature_process",
        "A signer was sent a certified email with their link, or a reminder (SignerNotified).",
    ),
    EventKind(
        "sealpost.signature.document_viewed",
        "signature_process",
        "A signer opened the documents for the first time (DocumentViewed).",
    ),
    EventKind(
        "sealpost.signature.signer_identified",
        "signature_process",
        "A signer entered the right one-time code (SignerIdentified).",
    ),
    EventKind(
        "sealpost.signature.signer_locked",
        "signature_process",
        "A signer entered 5 wrong codes and is locked out until a new link is issued "
        "(SignerIdentificationFailed).",
    ),
    EventKind(
        "sealpost.signature.signed",
        "signature_process",
        "A signer's (or approver's) PAdES signature was applied to every document "
        "(DocumentSigned).",
    ),
    EventKind(
        "sealpost.signature.completed",
        "signature_process",
        "Everyone signed: documents timestamped (PAdES B-LTA), audit trail sealed "
        "(ProcessCompleted).",
        terminal=True,
    ),
    EventKind(
        "sealpost.signature.declined",
        "signature_process",
        "A signer declined, with their reason; the process is over (ProcessDeclined).",
        terminal=True,
    ),
    EventKind(
        "sealpost.signature.expired",
        "signature_process",
        "Not completed before its expiry date (ProcessExpired).",
        terminal=True,
    ),
    EventKind(
        "sealpost.signature.cancelled",
        "signature_process",
        "The sender cancelled the process (ProcessCancelled).",
        terminal=True,
    ),
)

_SIGNATURE_TYPES = {
    "ProcessCreated": "sealpost.signature.created",
    "SignerNotified": "sealpost.signature.signer_notified",
    "DocumentViewed": "sealpost.signature.document_viewed",
    "SignerIdentified": "sealpost.signature.signer_identified",
    "SignerIdentificationFailed": "sealpost.signature.signer_locked",
    "DocumentSigned": "sealpost.signature.signed",
    "ProcessCompleted": "sealpost.signature.completed",
    "ProcessDeclined": "sealpost.signature.declined",
    "ProcessExpired": "sealpost.signature.expired",
    "ProcessCancelled": "sealpost.signature.cancelled",
}

_SIGNATURE_DETAILS = (
    "title",
    "signing_order",
    "expires_at",
    "role",
    "channel",
    "communication_id",
    "reminder",
    "documents",
    "signers",
    "signed_at",
    "unsigned",
)


def _from_signature(record: EvidenceRecord) -> NewEvent | None:
    type_ = _SIGNATURE_TYPES.get(record.event.name)
    if type_ is None:
        return None
    details = record.details
    data: dict[str, Any] = {"signature_process_id": record.subject.id, **record_reference(record)}
    if details.get("signer_id"):
        data["signer"] = {
            "id": details["signer_id"],
            "name": record.recipient.display_name if record.recipient else None,
            "address": record.recipient.address if record.recipient else None,
        }
    for key in _SIGNATURE_DETAILS:
        if key in details:
            data[key] = details[key]
    if record.reasons:
        data["reasons"] = [r.to_json() for r in record.reasons]
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type="signature_process",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


REGISTRY.register(KINDS, (SubjectType("signature_process", "signatures", _from_signature),))
