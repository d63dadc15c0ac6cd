"""Unanswered-mail policies and the clock of one thread (pure: no I/O).

A policy sets reply targets in business minutes of its service hours: the *first reply*
(nothing was answered in the thread yet) and any later *reply* (the customer wrote again after
an answer).  The clock starts at the first customer message the company has not answered and
runs only in service hours; an answer stops it (the thread then waits on the customer), the
customer's next mail starts a new one.  From the start and the target come four instants, all
counted in business time: the warning (a share of the target, or some minutes before it), the
deadline, the escalation to the supervisors and the reassignment (business minutes after the
deadline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sealpost.deadlines.calendars import BusinessCalendar
from sealpost.deadlines.hours import ServiceHours, Span, zone

REASSIGN_TO = ("none", "team", "unassigned")
"""Where an unanswered thread goes when its owner did not answer in time: nowhere, its team's
shared queue (the owner is removed, the team kept), or the tenant's unassigned queue."""

ALERT_KINDS = ("warning", "breached", "escalated", "reassigned")
SlaState = Literal["none", "paused", "ok", "warning", "breached", "escalated"]


@dataclass(frozen=True)
class SlaPolicy:
    id: str
    tenant_id: str
    team_id: str | None
    """None: the tenant's default; else this team's threads follow it instead."""
    name: str
    first_reply_minutes: int
    reply_minutes: int
    warning_percent: int | None
    warning_before_minutes: int | None
    escalate_after_minutes: int | None
    reassign_after_minutes: int | None
    reassign_to: str
    calendar: str | None
    """A business calendar code (``ES-MD``): its holidays and the tenant's own days close."""
    time_zone: str
    hours: Mapping[int, tuple[Span, ...]]
    created_at: datetime
    updated_at: datetime
    counts_from: datetime | None = None
    """The first creation of any policy of this scope (``archive_sla_scopes``): mail older
    than the policy counts from it, so replacing, or deleting and re-creating, a policy never
    restarts a running clock nor erases a coming breach."""

    def service_hours(self, calendar: BusinessCalendar | None) -> ServiceHours:
        return ServiceHours(zone(self.time_zone), self.hours, calendar)


@dataclass(frozen=True)
class SlaClock:
    """A thread's clock for one unanswered customer message."""

    policy_id: str
    target: Literal["first_reply", "reply"]
    started_at: datetime
    target_minutes: int
    warning_at: datetime | None
    due_at: datetime
    escalate_at: datetime | None
    reassign_at: datetime | None

    def state(self, now: datetime) -> SlaState:
        if self.escalate_at is not None and now >= self.escalate_at:
            return "escalated"
        if now >= self.due_at:
            return "breached"
        if self.warning_at is not None and now >= self.warning_at:
            return "warning"
        return "ok"

    def due(self, reassigns: bool) -> list[tuple[str, datetime]]:
        """Each alert this clock raises, with the instant it falls due, in time order."""
        found = [("breached", self.due_at)]
        if self.warning_at is not None:
            found.append(("warning", self.warning_at))
        if self.escalate_at is not None:
            found.append(("escalated", self.escalate_at))
        if reassigns and self.reassign_at is not None:
            found.append(("reassigned", self.reassign_at))
        order = {k: i for i, k in enumerate(ALERT_KINDS)}
        return sorted(found, key=lambda kv: (kv[1], order[kv[0]]))


def clock_for(
    policy: SlaPolicy, hours: ServiceHours, started_at: datetime, first: bool
) -> SlaClock:
    """The clock of a customer message that arrived at ``started_at``; ``first`` when the
    company never answered in this thread (the first-reply target)."""
    target = policy.first_reply_minutes if first else policy.reply_minutes
    due = hours.add_minutes(started_at, target)
    warning = None
    if policy.warning_percent is not None:
        warning = hours.add(started_at, timedelta(minutes=target * policy.warning_percent / 100))
    elif policy.warning_before_minutes is not None:
        warning = hours.add_minutes(started_at, max(0, target - policy.warning_before_minutes))
    escalate = None
    if policy.escalate_after_minutes is not None:
        escalate = hours.add_minutes(due, policy.escalate_after_minutes)
    reassign = None
    if policy.reassign_to != "none" and policy.reassign_after_minutes is not None:
        reassign = hours.add_minutes(due, policy.reassign_after_minutes)
    return SlaClock(
        policy_id=policy.id,
        target="first_reply" if first else "reply",
        started_at=started_at,
        target_minutes=target,
        warning_at=warning,
        due_at=due,
        escalate_at=escalate,
        reassign_at=reassign,
    )
