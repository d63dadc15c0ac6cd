"""A running term as stored: its rule, its trigger, its end and where its clock stands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sealpost.ledger.records import format_time as _iso

RUNNING = "running"
APPROACHING = "approaching"
PASSED = "passed"
STATUSES = (RUNNING, APPROACHING, PASSED)

TRIGGER_EVENTS: Mapping[str, str] = {
    "sealpost.communication.delivered": "delivery",
    "sealpost.communication.handed_over": "handover",
    "sealpost.communication.accepted_by_recipient": "acceptance",
}
"""The events (and so the evidence records) that start a term, by ``starts_from``:
RelayToNonERDS from the recipient's own mail server (not a smarthost: a relay is not the
recipient), ContentHandover, ConsignmentAcceptance."""


@dataclass(frozen=True)
class Deadline:
    id: str
    tenant_id: str
    subject_type: str
    subject_id: str
    rule: Mapping[str, Any]
    trigger_record_id: str
    trigger_at: datetime
    ends_on: date
    ends_at: datetime
    approaching_at: datetime
    time_zone: str
    calendar_name: str
    data_version: str
    computation: Mapping[str, Any]
    status: str
    record_id: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """What ``GET /v1/communications/{id}`` shows in ``deadlines``."""
        return {
            "id": self.id,
            "status": self.status,
            "rule": dict(self.rule),
            "trigger_record_id": self.trigger_record_id,
            "trigger_at": _iso(self.trigger_at),
            "ends_on": self.ends_on.isoformat(),
            "ends_at": _iso(self.ends_at),
            "approaching_at": _iso(self.approaching_at),
            "time_zone": self.time_zone,
            "calendar_name": self.calendar_name,
            "data_version": self.data_version,
            "text": self.computation.get("text"),
            "skipped": self.computation.get("skipped", []),
            "record_id": self.record_id,
            "evidence": f"/v1/evidence/{self.record_id}",
        }
