"""The events of legal deadlines (``sealpost.deadline.*``), about the communication the term
runs on.  Registered in :data:`sealpost.events.registry.REGISTRY` when the package is imported.

The clock writes them explicitly with its records (``append_evidence(conn, records, events)``):
the communication's subject type, registered by communications, derives none from them.
"""

from __future__ import annotations

from typing import Any

from sealpost.deadlines.model import Deadline
from sealpost.events.registry import REGISTRY, EventKind, NewEvent, new_event, record_reference
from sealpost.ledger.records import EvidenceRecord, format_time

APPROACHING = "sealpost.deadline.approaching"
PASSED = "sealpost.deadline.passed"

KINDS: tuple[EventKind, ...] = (
    EventKind(
        APPROACHING,
        "communication",
        "A legal term on the communication ends soon (DeadlineApproaching; by default two "
        "business days before its last day).",
    ),
    EventKind(
        PASSED,
        "communication",
        "A legal term on the communication has ended: its last day is over in the calendar's "
        "time zone (DeadlinePassed).",
    ),
)


def deadline_event(type_: str, deadline: Deadline, record: EvidenceRecord) -> NewEvent:
    data: dict[str, Any] = {
        "communication_id": deadline.subject_id,
        "deadline_id": deadline.id,
        "rule": dict(deadline.rule),
        "ends_on": deadline.ends_on.isoformat(),
        "ends_at": format_time(deadline.ends_at),
        "time_zone": deadline.time_zone,
        "calendar_name": deadline.calendar_name,
        "data_version": deadline.data_version,
        **record_reference(record),
    }
    return new_event(
        tenant_id=deadline.tenant_id,
        type=type_,
        subject_type=deadline.subject_type,
        subject_id=deadline.subject_id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


REGISTRY.register(KINDS)
