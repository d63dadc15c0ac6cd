"""Legal deadlines at work: the tenant's calendars, the follower that starts a term when its
trigger is recorded, and the clock that says when it approaches and when it has passed.

**The follower** reads the outbox after its own cursor (``deadlines``), like any integrator
would: a communication whose SubmissionAcceptance carries a deadline rule gets its term when
the event of the rule's ``starts_from`` comes (delivered, handed_over, accepted_by_recipient).
No delivery path knows about deadlines: the evidence is the one source.  The term is computed
with the tenant's own days on the rule's calendar, stored, and sealed as a DeadlineSet record
on the communication (rule, calendar name, data version, last day).  Starting a term twice is
impossible (one per communication, unique), so a follower that crashes before moving its
cursor does the same again harmlessly.

**The clock** seals DeadlineApproaching (``lead_business_days`` business days before the last
day, at 00:00 in the calendar's zone) and DeadlinePassed (once the last day is over), with the
events ``sealpost.deadline.approaching`` / ``.passed``.  Both are the passing of time measured
by Sealpost, never an act of the recipient.

No method commits a transaction of a caller's: each step is one transaction of its own, in the
repository, and the loop (``tasks.py``) is the boundary.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import Engine

from sealpost.deadlines.calendars import (
    BusinessCalendar,
    ExtraDay,
    calendar_for,
    normalised_code,
)
from sealpost.deadlines.events import APPROACHING, PASSED, deadline_event
from sealpost.deadlines.model import APPROACHING as APPROACHING_STATUS
from sealpost.deadlines.model import PASSED as PASSED_STATUS
from sealpost.deadlines.model import (
    RUNNING,
    TRIGGER_EVENTS,
    Deadline,
)
from sealpost.deadlines.repository import DeadlineRepository
from sealpost.deadlines.rules import ComputedDeadline, DeadlineRule, compute, zone_for
from sealpost.errors import InvalidInput
from sealpost.events.outbox import OutboxRepository, StoredEvent
from sealpost.ledger.records import Subject, format_time, new_record
from sealpost.ledger.repository import TimelineEntry, timeline
from sealpost.logging import get_logger

log = get_logger(__name__)

CURSOR = "deadlines"
"""The follower's named outbox cursor."""

DAY_KINDS = ("holiday", "closure")
MAX_DAYS_PER_CALENDAR = 400


@dataclass(frozen=True)
class DeadlineSettings:
    lead_business_days: int = 2
    """DeadlineApproaching this many business days before the last day."""
    batch: int = 200


class DeadlineService:
    def __init__(
        self,
        repo: DeadlineRepository,
        outbox: OutboxRepository,
        engine: Engine,
        settings: DeadlineSettings | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.outbox = outbox
        self.engine = engine
        self.settings = settings or DeadlineSettings()
        self.now = now

    # -- calendars -----------------------------------------------------------------------------

    def calendar(self, tenant_id: str, code: str) -> BusinessCalendar:
        """``code``'s public calendar with the tenant's own days on it (422 unknown_calendar)."""
        code = normalised_code(code)
        return calendar_for(code, self.repo.days(tenant_id, code))

    def replace_days(self, tenant_id: str, code: str, days: Sequence[ExtraDay]) -> str:
        code = normalised_code(code)
        seen: set[date] = set()
        for i, day in enumerate(days):
            if day.kind not in DAY_KINDS:
                raise InvalidInput(f"days[{i}].kind: one of {', '.join(DAY_KINDS)}")
            if day.day in seen:
                raise InvalidInput(f"days[{i}].date: {day.day.isoformat()} is given twice")
            seen.add(day.day)
        if len(days) > MAX_DAYS_PER_CALENDAR:
            raise InvalidInput(f"at most {MAX_DAYS_PER_CALENDAR} days per calendar")
        self.repo.replace_days(tenant_id, code, days)
        return code

    def compute(self, tenant_id: str, rule: DeadlineRule, trigger_at: datetime) -> ComputedDeadline:
        calendar = self.calendar(tenant_id, rule.calendar)
        return compute(rule, trigger_at, zone_for(calendar.code), calendar)

    # -- the follower --------------------------------------------------------------------------

    def follow_once(self) -> int:
        """Start the terms whose trigger events came since the cursor; returns how many events
        were read (0: nothing new)."""
        return self.outbox.follow(CURSOR, self.settings.batch, self._started_by)

    def _started_by(self, event: StoredEvent) -> None:
        starts_from = TRIGGER_EVENTS.get(event.type)
        if starts_from is None or event.record_id is None:
            return
        subject_type, _, subject_id = event.subject.partition("/")
        if subject_type == "communications":
            self._start(event.tenant_id, subject_id, event.record_id, starts_from)

    def _start(
        self, tenant_id: str, communication_id: str, trigger_record_id: str, starts_from: str
    ) -> None:
        entries = timeline(self.engine, tenant_id, "communication", communication_id)
        rule_json = next(
            (
                e.record.get("details", {}).get("deadline")
                for e in entries
                if e.event == "SubmissionAcceptance"
            ),
            None,
        )
        if rule_json is None:
            return
        trigger = next((e for e in entries if e.record_id == trigger_record_id), None)
        if trigger is None:
            return
        try:
            rule = DeadlineRule.from_json(rule_json)
        except InvalidInput as exc:  # checked at submission; a record is never rewritten
            log.error("deadline.bad_rule", communication=communication_id, error=exc.message)
            return
        if rule.starts_from != starts_from:
            return
        try:
            computed = self.compute(tenant_id, rule, trigger.event_time)
        except InvalidInput as exc:  # a calendar the holidays data no longer knows
            log.error("deadline.not_computed", communication=communication_id, error=exc.message)
            return
        self.start(
            tenant_id, "communication", communication_id, trigger_record_id, computed, trigger
        )

    def start(
        self,
        tenant_id: str,
        subject_type: str,
        subject_id: str,
        trigger_record_id: str,
        computed: ComputedDeadline,
        trigger: TimelineEntry | None = None,
    ) -> Deadline | None:
        """Store a computed term and seal its DeadlineSet record; None when the subject
        already has a term."""
        now = self.now()
        calendar = self.calendar(tenant_id, computed.rule.calendar)
        lead_day = calendar.business_days_before(computed.ends_on, self.settings.lead_business_days)
        zone = zone_for(calendar.code)
        approaching_at = datetime.combine(lead_day, time(0), tzinfo=zone).astimezone(UTC)
        record = new_record(
            tenant_id=tenant_id,
            event="DeadlineSet",
            subject=Subject(subject_type, subject_id),
            event_time=now,
            details={
                "deadline": computed.to_json(),
                "trigger_record_id": trigger_record_id,
                **_parties(trigger),
            },
        )
        deadline = Deadline(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            subject_type=subject_type,
            subject_id=subject_id,
            rule=computed.rule.to_json(),
            trigger_record_id=trigger_record_id,
            trigger_at=computed.trigger_at,
            ends_on=computed.ends_on,
            ends_at=computed.ends_at,
            approaching_at=approaching_at,
            time_zone=computed.time_zone,
            calendar_name=computed.calendar_name,
            data_version=computed.data_version,
            computation=computed.to_json(),
            status=RUNNING,
            record_id=record.id,
            created_at=now,
            updated_at=now,
        )
        if not self.repo.add(deadline, record):
            return None
        log.info("deadline.set", subject=subject_id, ends_on=computed.ends_on.isoformat())
        return deadline

    # -- the clock -----------------------------------------------------------------------------

    def tick(self) -> int:
        """Seal what the clock says about due terms; returns how many moved."""
        now = self.now()
        moved = 0
        for deadline in self.repo.due(now, self.settings.batch):
            passed = deadline.ends_at < now
            status = PASSED_STATUS if passed else APPROACHING_STATUS
            record = new_record(
                tenant_id=deadline.tenant_id,
                event="DeadlinePassed" if passed else "DeadlineApproaching",
                subject=Subject(deadline.subject_type, deadline.subject_id),
                event_time=now,
                details={
                    "deadline_id": deadline.id,
                    "deadline_record_id": deadline.record_id,
                    "rule": dict(deadline.rule),
                    "ends_on": deadline.ends_on.isoformat(),
                    "ends_at": deadline.computation.get("ends_at"),
                    "time_zone": deadline.time_zone,
                    "calendar_name": deadline.calendar_name,
                    "data_version": deadline.data_version,
                },
            )
            event = deadline_event(PASSED if passed else APPROACHING, deadline, record)
            if self.repo.move(deadline, status, now, record, [event]):
                moved += 1
        return moved


def _parties(trigger: TimelineEntry | None) -> dict[str, Any]:
    """The trigger record's event and time, as the DeadlineSet record cites them."""
    if trigger is None:
        return {}
    return {"trigger_event": trigger.event, "trigger_time": format_time(trigger.event_time)}
