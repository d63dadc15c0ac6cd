"""The events communications emit, and which of their evidence records imply them.

Integrators asked for *one* terminal event per outcome, not one per retry: a temporary delivery
failure (RelayToNonERDSFailure) is evidence but no event; they get a single ``delayed``
event when the delay warning fires and a single ``failed`` or ``expired`` at the end.
Registered in :data:`sealpost.events.registry.REGISTRY` when the package is imported.
"""

from __future__ import annotations

from typing import Any

from sealpost.communications.outcomes import accepted_by
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
        "sealpost.communication.accepted",
        "communication",
        "Sealpost durably stored the message for this recipient (SubmissionAcceptance).",
        opens_subject=True,
    ),
    EventKind(
        "sealpost.communication.delivered",
        "communication",
        "The recipient's mail server accepted the message (RelayToNonERDS from its MX or "
        "route; ContentConsignment in records before catalogue 2).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.relayed",
        "communication",
        "The configured relay (smarthost) accepted the message (RelayToNonERDS from a "
        "smarthost; RelayAcceptance in records before catalogue 2).",
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
    # registered pickup (the pickup domain writes the records; they are the communication's)
    EventKind(
        "sealpost.communication.notice_sent",
        "communication",
        "Pickup: the notice (or a reminder) went to the recipient (ConsignmentNotification).",
    ),
    EventKind(
        "sealpost.communication.notice_failed",
        "communication",
        "Pickup: the notice could not be sent or delivered (ConsignmentNotificationFailure).",
    ),
    EventKind(
        "sealpost.communication.notice_delivered",
        "communication",
        "Pickup: the recipient's server accepted the notice email, or the operator reported "
        "the notice SMS delivered (NotificationDelivered).",
    ),
    EventKind(
        "sealpost.communication.notice_opened",
        "communication",
        "Pickup: the notice's link was opened in a browser (NotificationAccessTracking).",
    ),
    EventKind(
        "sealpost.communication.offered",
        "communication",
        "Pickup: the identified recipient is asked to accept or reject "
        "(NotificationForAcceptance).",
    ),
    EventKind(
        "sealpost.communication.identification_failed",
        "communication",
        "Pickup: too many wrong codes or answers; the recipient is locked out until the "
        "sender resends (NotificationForAcceptanceFailure).",
    ),
    EventKind(
        "sealpost.communication.accepted_by_recipient",
        "communication",
        "Pickup: the recipient accepted the message (ConsignmentAcceptance).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.rejected_by_recipient",
        "communication",
        "Pickup: the recipient rejected the message (ConsignmentRejection).",
        terminal=True,
    ),
    EventKind(
        "sealpost.communication.handed_over",
        "communication",
        "Pickup: the content was handed over to the identified recipient (ContentHandover).",
    ),
    EventKind(
        "sealpost.communication.content_downloaded",
        "communication",
        "Pickup: the recipient downloaded the message or an attachment (ContentAccessTracking).",
    ),
    EventKind(
        "sealpost.communication.unclaimed",
        "communication",
        "Pickup: the window closed without acceptance or rejection (AcceptanceRejectionExpiry).",
        terminal=True,
    ),
    # open and click tracking (optional, per tenant; docs/tracking.md): never proof of reading
    EventKind(
        "sealpost.communication.opened",
        "communication",
        "Tracking (non-essential): the HTML part's 1x1 image was fetched (OpenTracked); mail "
        "clients preload images, so never proof of reading. At most one per minute.",
    ),
    EventKind(
        "sealpost.communication.clicked",
        "communication",
        "Tracking (non-essential): a tracked link was followed (LinkClicked); security "
        "scanners follow links, so never proof of reading. At most one per link per minute.",
    ),
    # replies (reply capture: docs/replies.md)
    EventKind(
        "sealpost.communication.replied",
        "communication",
        "The recipient answered: a reply reached the communication's reply address, or named "
        "it in In-Reply-To/References (ReplyReceived, not automatic).",
    ),
    EventKind(
        "sealpost.communication.auto_replied",
        "communication",
        "An automatic answer (out-of-office, vacation responder, RFC 3834 Auto-Submitted) was "
        "received and kept; not a reply (ReplyReceived with automatic: true).",
    ),
    EventKind(
        "sealpost.submission.rejected",
        "submission",
        "Sealpost refused a submission of an identified sender (SubmissionRejection).",
        terminal=True,
        opens_subject=True,
    ),
)

_STATUS_AFTER = {
    "SubmissionAcceptance": "queued",
    "DelayWarning": "queued",
    "NonDelivery": "failed",
    "ConsignmentAcceptance": "accepted",
    "ConsignmentRejection": "rejected",
    "AcceptanceRejectionExpiry": "unclaimed",
}

_PICKUP_TYPES = {
    "ConsignmentNotification": "sealpost.communication.notice_sent",
    "ConsignmentNotificationFailure": "sealpost.communication.notice_failed",
    "NotificationDelivered": "sealpost.communication.notice_delivered",
    "NotificationAccessTracking": "sealpost.communication.notice_opened",
    "NotificationForAcceptance": "sealpost.communication.offered",
    "NotificationForAcceptanceFailure": "sealpost.communication.identification_failed",
    "ConsignmentAcceptance": "sealpost.communication.accepted_by_recipient",
    "ConsignmentRejection": "sealpost.communication.rejected_by_recipient",
    "ContentHandover": "sealpost.communication.handed_over",
    "ContentAccessTracking": "sealpost.communication.content_downloaded",
    "AcceptanceRejectionExpiry": "sealpost.communication.unclaimed",
}
_TRACKING_TYPES = {
    "OpenTracked": "sealpost.communication.opened",
    "LinkClicked": "sealpost.communication.clicked",
}
_ACCEPTED_TYPE = {
    "delivered": "sealpost.communication.delivered",
    "relayed": "sealpost.communication.relayed",
}


def _communication_type(record: EvidenceRecord) -> str | None:
    name = record.event.name
    if name == "ReplyReceived":
        reply = record.details.get("reply")
        automatic = isinstance(reply, dict) and bool(reply.get("automatic"))
        return (
            "sealpost.communication.auto_replied" if automatic else "sealpost.communication.replied"
        )
    if name == "NonDelivery":
        expired = any(r.code == "expired" for r in record.reasons)
        return "sealpost.communication.expired" if expired else "sealpost.communication.failed"
    accepted = accepted_by(name, record.details, record.version)
    if accepted is not None:
        return _ACCEPTED_TYPE[accepted]
    if name in _PICKUP_TYPES:
        return _PICKUP_TYPES[name]
    if name in _TRACKING_TYPES:
        return _TRACKING_TYPES[name]
    return {
        "SubmissionAcceptance": "sealpost.communication.accepted",
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


def _reply_data(record: EvidenceRecord) -> dict[str, Any]:
    reply = record.details.get("reply")
    reply = reply if isinstance(reply, dict) else {}
    cid = record.subject.id
    reply_id = reply.get("reply_id")
    data: dict[str, Any] = {
        "communication_id": cid,
        "reply_id": reply_id,
        **record_reference(record),
        "from": record.sender.address if record.sender is not None else None,
        "message_id": reply.get("message_id"),
        "in_reply_to": reply.get("in_reply_to"),
        "subject": reply.get("subject"),
        "matched_by": reply.get("matched_by"),
        "automatic": bool(reply.get("automatic")),
        "received_at": format_time(record.event_time),
        "url": f"/v1/communications/{cid}/replies/{reply_id}/raw",
    }
    if record.content is not None:
        data["content"] = {"sha256": record.content.sha256, "size": record.content.size}
    if reply.get("automatic_reason"):
        data["automatic_reason"] = reply["automatic_reason"]
    return data


def _communication_data(record: EvidenceRecord, type_: str) -> dict[str, Any]:
    if record.event.name == "ReplyReceived":
        return _reply_data(record)
    details = record.details
    cid = record.subject.id
    status = (
        _STATUS_AFTER.get(record.event.name)
        or accepted_by(record.event.name, details, record.version)
        or details.get("status")
    )
    if status is None and record.event.name in _PICKUP_TYPES:
        handed = record.event.name in ("ContentHandover", "ContentAccessTracking")
        basic = str(details.get("consignment", "")).endswith("/basic")
        status = ("handed_over" if basic else "accepted") if handed else "pickup"
    data: dict[str, Any] = {
        "communication_id": cid,
        "status": status,
        **record_reference(record),
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
    elif record.event.name in _TRACKING_TYPES:
        for key in ("url", "link", "likely_automated", "seconds_after_delivery", "hits"):
            if key in details:
                data[key] = details[key]
        visitor = details.get("visitor")
        if isinstance(visitor, dict):
            data["ip"] = visitor.get("ip")
            data["user_agent"] = visitor.get("user_agent")
    elif record.event.name in _PICKUP_TYPES:
        for key in (
            "notice_communication_id",
            "reminder",
            "reason",
            "identification",
            "identification_failed",
            "download",
        ):
            if details.get(key) is not None:
                data[key] = details[key]
        visitor = details.get("visitor")
        if isinstance(visitor, dict):
            data["ip"] = visitor.get("ip")
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
        **record_reference(record),
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


REGISTRY.register(
    KINDS,
    (
        SubjectType("communication", "communications", _from_communication),
        SubjectType("submission", "submissions", _from_submission),
    ),
)
