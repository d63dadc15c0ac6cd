"""The catalogue of events out, and which evidence records imply them.

An *event* tells an integrator that something it cares about changed: a communication was
accepted, delivered, finally failed.  It is derived from the evidence record of that change, in
the same transaction (``store.outbox.append_evidence``), so an event never exists without its
evidence and a change is never committed without its event.  Not every record is an event:
a temporary delivery failure (ContentConsignmentFailure) is evidence, but integrators asked for
*one* terminal event per outcome, not one per retry; they get a single ``delayed`` event when
the delay warning fires and a single ``failed`` or ``expired`` at the end.

Pure: no I/O.  ``docs/events.md`` shows every type with a sample payload.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import time_ns
from typing import Any

from sealpost.ledger.records import EvidenceRecord


@dataclass(frozen=True)
class EventKind:
    """One type of event: its CloudEvents ``type`` and what it means."""

    type: str
    subject_type: str
    summary: str
    terminal: bool = False
    """The last word on an outcome (delivered, failed, expired...); a later one may follow
    only if the outcome itself changes (a bounce after a delivery)."""
    opens_subject: bool = False
    """Always its subject's first event (sequence 1): the outbox keeps no counter for it."""


PREFIX = "sealpost."

KINDS: tuple[EventKind, ...] = (
    EventKind(
        "sealpost.communication.accepted",
        "communication",
        "Sealpost durably stored the message for this recipient (SubmissionAcceptance).",
        opens_subject=True,
    ),
    EventKind(
        "sealpost.communication.delivered",
        "communication",
        "The recipient's mail server accepted the message (ContentConsignment).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.relayed",
        "communication",
        "The configured relay (smarthost) accepted the message (RelayAcceptance).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.delayed",
        "communication",
        "Still not delivered after the delay-warning time (12 h by default); sent once.",
    ),
    EventKind(
        "sealpost.communication.failed",
        "communication",
        "Final non-delivery: a 5xx reply, or a bounce (DSN), possibly after a delivery.",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.expired",
        "communication",
        "Final non-delivery: not delivered before the expiry time (24 h by default).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.certificate_issued",
        "communication",
        "A sealed evidence certificate (PDF) version is ready to download.",
    ),
    EventKind(
        "sealpost.submission.rejected",
        "submission",
        "Sealpost refused a submission of an identified sender (SubmissionRejection).",
        terminal=True,
        opens_subject=True,
    ),
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
    EventKind(
        "sealpost.webhook_endpoint.disabled",
        "webhook_endpoint",
        "A webhook endpoint failed for the whole retry window and was disabled.",
    ),
)

EVENT_KINDS: dict[str, EventKind] = {k.type: k for k in KINDS}

OPENED_SUBJECTS = frozenset(k.subject_type for k in KINDS if k.opens_subject)
"""Subject types whose first event is always an opening one (``opens_subject``)."""

TEST_EVENT_TYPE = "sealpost.webhook.test"
"""Sent by ``POST /v1/webhooks/{id}/test`` only; never stored in the outbox."""

COLLECTIONS = {
    "communication": "communications",
    "submission": "submissions",
    "webhook_endpoint": "webhooks",
    "signature_process": "signatures",
}
"""CloudEvents ``subject`` is ``<collection>/<id>``, the resource's path under ``/v1``."""


@dataclass(frozen=True)
class NewEvent:
    """An event about to be written to the outbox (its per-subject sequence comes there)."""

    id: str
    tenant_id: str
    type: str
    subject_type: str
    subject_id: str
    time: datetime
    data: Mapping[str, Any]
    record_id: str | None = None

    @property
    def subject(self) -> str:
        return f"{COLLECTIONS[self.subject_type]}/{self.subject_id}"


def new_event(
    *,
    tenant_id: str,
    type: str,
    subject_type: str,
    subject_id: str,
    time: datetime,
    data: Mapping[str, Any],
    record_id: str | None = None,
) -> NewEvent:
    if type not in EVENT_KINDS:
        raise KeyError(f"unknown event type {type!r}")
    return NewEvent(
        new_event_id(), tenant_id, type, subject_type, subject_id, time, data, record_id
    )


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then 74 random bits.  Time-ordered
    ids keep the outbox's id index append-only; random ones would dirty a page per event."""
    millis = time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (random_bits >> 62) << 64
    value |= 0b10 << 62 | random_bits & (2**62 - 1)
    return str(uuid.UUID(int=value))


# -- from evidence records ------------------------------------------------------------------

_STATUS_AFTER = {
    "SubmissionAcceptance": "queued",
    "DelayWarning": "queued",
    "ContentConsignment": "delivered",
    "RelayAcceptance": "relayed",
    "NonDelivery": "failed",
}


def _communication_type(record: EvidenceRecord) -> str | None:
    name = record.event.name
    if name == "NonDelivery":
        expired = any(r.code == "expired" for r in record.reasons)
        return "sealpost.communication.expired" if expired else "sealpost.communication.failed"
    return {
        "SubmissionAcceptance": "sealpost.communication.accepted",
        "ContentConsignment": "sealpost.communication.delivered",
        "RelayAcceptance": "sealpost.communication.relayed",
        "DelayWarning": "sealpost.communication.delayed",
        "CertificateIssued": "sealpost.communication.certificate_issued",
    }.get(name)


def _parties(record: EvidenceRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if record.sender is not None:
        out["sender"] = record.sender.address
    if record.recipient is not None:
        out["recipient"] = record.recipient.address
    if record.application_identifier is not None:
        out["message_id"] = record.application_identifier
    return out


def _evidence(record: EvidenceRecord) -> dict[str, Any]:
    return {
        "record_id": record.id,
        "evidence_event": record.event.name,
        "evidence": f"/v1/evidence/{record.id}",
    }


def _communication_data(record: EvidenceRecord, type_: str) -> dict[str, Any]:
    details = record.details
    cid = record.subject.id
    status = _STATUS_AFTER.get(record.event.name) or details.get("status")
    data: dict[str, Any] = {
        "communication_id": cid,
        "status": status,
        **_evidence(record),
        **_parties(record),
    }
    if record.reasons:
        data["reasons"] = [r.to_json() for r in record.reasons]
    if type_ == "sealpost.communication.accepted":
        message = details.get("message", {})
        data.update(
            submission_id=details.get("submission_id"),
            via=details.get("via"),
            subject=message.get("subject") if isinstance(message, dict) else None,
        )
        if record.content is not None:
            data["content"] = {"sha256": record.content.sha256, "size": record.content.size}
    elif type_ == "sealpost.communication.certificate_issued":
        version = details.get("version")
        data["certificate"] = {
            "version": version,
            "sha256": details.get("sha256"),
            "size": details.get("size"),
            "supersedes_sha256": details.get("supersedes_sha256"),
            "url": f"/v1/communications/{cid}/certificate.pdf?version={version}",
        }
    else:
        remote = details.get("remote")
        if isinstance(remote, dict):
            data["remote"] = {k: remote.get(k) for k in ("host", "ip", "port")}
        for key in ("reply", "attempt", "queue_id", "after_status"):
            if details.get(key) is not None:
                data[key] = details[key]
        if isinstance(details.get("tls"), dict):
            data["tls_version"] = details["tls"].get("version")
        if isinstance(details.get("dsn"), dict):
            data["dsn"] = dict(details["dsn"])
    return data


def _submission_data(record: EvidenceRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "submission_id": record.subject.id,
        **_evidence(record),
        **_parties(record),
        "recipients": list(record.details.get("recipients", [])),
        "reasons": [r.to_json() for r in record.reasons],
    }
    return data


def _from_communication(record: EvidenceRecord) -> NewEvent | None:
    type_ = _communication_type(record)
    if type_ is None:
        return None
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type="communication",
        subject_id=record.subject.id,
        time=record.event_time,
        data=_communication_data(record, type_),
        record_id=record.id,
    )


def _from_submission(record: EvidenceRecord) -> NewEvent | None:
    if record.event.name != "SubmissionRejection":
        return None
    return new_event(
        tenant_id=record.tenant_id,
        type="sealpost.submission.rejected",
        subject_type="submission",
        subject_id=record.subject.id,
        time=record.event_time,
        data=_submission_data(record),
        record_id=record.id,
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
    data: dict[str, Any] = {"signature_process_id": record.subject.id, **_evidence(record)}
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


_FROM_RECORD: dict[str, Callable[[EvidenceRecord], NewEvent | None]] = {
    "communication": _from_communication,
    "submission": _from_submission,
    "signature_process": _from_signature,
}


def events_for_records(records: Sequence[EvidenceRecord]) -> list[NewEvent]:
    """The events these records imply, in record order (records without one are skipped)."""
    events = []
    for record in records:
        derive = _FROM_RECORD.get(record.subject.type)
        event = derive(record) if derive is not None else None
        if event is not None:
            events.append(event)
    return events


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """An endpoint's filter: empty means every type; ``sealpost.communication.*`` a family."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def valid_pattern(pattern: str) -> bool:
    """A filter names a known type, a family of them (``prefix.*``), or ``*``."""
    if pattern == "*" or pattern in EVENT_KINDS:
        return True
    return pattern.endswith(".*") and any(k.type.startswith(pattern[:-1]) for k in KINDS)
