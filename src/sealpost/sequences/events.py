"""The events reminder sequences emit (``sealpost.sequence.*``), derived from the enrolment's
evidence records (subject type ``enrolment``, collection ``sequences/enrolments``).
Registered in :data:`sealpost.events.registry.REGISTRY` when the package is imported."""

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
        "sealpost.sequence.enrolled",
        "enrolment",
        "A person was enrolled in a sequence (SequenceEnrolled); the first step is scheduled.",
        opens_subject=True,
    ),
    EventKind(
        "sealpost.sequence.step_sent",
        "enrolment",
        "A step's message was accepted as a communication or SMS (SequenceStepSent).",
    ),
    EventKind(
        "sealpost.sequence.step_failed",
        "enrolment",
        "A step's message could not be sent or its channel failed (SequenceStepFailed).",
    ),
    EventKind(
        "sealpost.sequence.stopped",
        "enrolment",
        "The enrolment stopped, with its cause: paid, replied, opted_out, cancelled, "
        "pickup_accepted, pickup_rejected, signed or failed (SequenceStopped).",
        terminal=True,
    ),
    EventKind(
        "sealpost.sequence.completed",
        "enrolment",
        "Every step of the enrolment was sent without a stop (SequenceCompleted).",
        terminal=True,
    ),
)

_TYPES = {
    "SequenceEnrolled": "sealpost.sequence.enrolled",
    "SequenceStepSent": "sealpost.sequence.step_sent",
    "SequenceStepFailed": "sealpost.sequence.step_failed",
    "SequenceStopped": "sealpost.sequence.stopped",
    "SequenceCompleted": "sealpost.sequence.completed",
}

_COPIED = ("sequence_id", "variant", "step", "channel", "message_type", "message_id", "cause")


def _from_enrolment(record: EvidenceRecord) -> NewEvent | None:
    type_ = _TYPES.get(record.event.name)
    if type_ is None:
        return None
    data: dict[str, Any] = {"enrolment_id": record.subject.id, **record_reference(record)}
    for key in _COPIED:
        if key in record.details:
            data[key] = record.details[key]
    if record.reasons:
        data["reasons"] = [r.to_json() for r in record.reasons]
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type="enrolment",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


REGISTRY.register(KINDS, (SubjectType("enrolment", "sequences/enrolments", _from_enrolment),))
