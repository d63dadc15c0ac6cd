"""Request and response bodies of the unanswered-mail alerts and scheduled sends API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from sealpost.archive.scheduled_model import ScheduledSend
from sealpost.archive.sla_model import SlaPolicy
from sealpost.deadlines.hours import spans_json


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlaPolicyBody(Strict):
    team_id: str | None = Field(
        None,
        max_length=36,
        pattern=r"^[A-Za-z0-9-]+$",
        description="This team's threads follow it; absent: the tenant's.",
    )
    name: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    first_reply_minutes: int = Field(
        ge=1, le=527_040, description="Business minutes to the first reply (8 h: 480)."
    )
    reply_minutes: int = Field(
        ge=1, le=527_040, description="Business minutes to any later reply (24 h: 1440)."
    )
    warning_percent: int | None = Field(
        None, ge=1, le=99, description="Warn at this share of the target (75)."
    )
    warning_before_minutes: int | None = Field(
        None, ge=0, le=527_040, description="Or warn this many business minutes before it."
    )
    escalate_after_minutes: int | None = Field(
        None, ge=0, le=527_040, description="Escalate to the supervisors this long after it."
    )
    reassign_after_minutes: int | None = Field(
        None, ge=0, le=527_040, description="Take the thread from its owner this long after it."
    )
    reassign_to: Literal["none", "team", "unassigned"] = "none"
    calendar: str | None = Field(
        None, max_length=16, description="Holidays: a business calendar code (ES, ES-MD)."
    )
    time_zone: str = Field(max_length=64, description="IANA zone of the hours (Europe/Madrid).")
    hours: dict[str, list[list[str]]] = Field(
        max_length=7,
        description='Spans of wall time per weekday: {"mon": [["09:00", "14:00"], '
        '["15:00", "18:00"]], ...}; a weekday left out is closed.',
    )


class SlaPolicyOut(BaseModel):
    id: str
    team_id: str | None
    name: str
    first_reply_minutes: int
    reply_minutes: int
    warning_percent: int | None
    warning_before_minutes: int | None
    escalate_after_minutes: int | None
    reassign_after_minutes: int | None
    reassign_to: str
    calendar: str | None
    time_zone: str
    hours: dict[str, list[list[str]]]
    created_at: datetime
    updated_at: datetime
    counts_from: datetime | None = Field(
        None,
        description="When the tenant first had a policy of this scope: mail older than the "
        "policy counts from here (kept when the policy is replaced, or deleted and created "
        "again).",
    )

    @classmethod
    def of(cls, p: SlaPolicy) -> SlaPolicyOut:
        return cls(
            id=p.id,
            team_id=p.team_id,
            name=p.name,
            first_reply_minutes=p.first_reply_minutes,
            reply_minutes=p.reply_minutes,
            warning_percent=p.warning_percent,
            warning_before_minutes=p.warning_before_minutes,
            escalate_after_minutes=p.escalate_after_minutes,
            reassign_after_minutes=p.reassign_after_minutes,
            reassign_to=p.reassign_to,
            calendar=p.calendar,
            time_zone=p.time_zone,
            hours=spans_json(p.hours),
            created_at=p.created_at,
            updated_at=p.updated_at,
            counts_from=p.counts_from,
        )


class SlaAlertOut(BaseModel):
    kind: str = Field(description="warning, breached, escalated or reassigned.")
    due_at: datetime
    raised_at: datetime = Field(description="Later than due_at when held to service hours.")
    record_id: str | None


class ThreadSlaOut(BaseModel):
    thread_id: str
    subject: str
    owner_agent_id: str | None
    team_id: str | None
    policy_id: str | None
    state: Literal["none", "paused", "ok", "warning", "breached", "escalated"] = Field(
        description="none: no policy; paused: the thread waits on the customer."
    )
    target: Literal["first_reply", "reply"] | None = None
    target_minutes: int | None = None
    started_at: datetime | None = Field(None, description="The unanswered customer message.")
    warning_at: datetime | None = None
    due_at: datetime | None = None
    escalate_at: datetime | None = None
    reassign_at: datetime | None = None
    business_minutes_elapsed: int | None = None
    alerts: list[SlaAlertOut] = []


# -- scheduled sends ---------------------------------------------------------------------------


class HoldBody(Strict):
    time_zone: str = Field(max_length=64, description="The recipient's IANA zone.")
    calendar: str | None = Field(
        None, max_length=16, description="The recipient's holidays: a calendar code (ES-CT)."
    )
    hours: dict[str, list[list[str]]] | None = Field(
        None,
        max_length=7,
        description="The recipient's working hours (as a policy's); default Mon-Fri 09-18.",
    )


class ScheduledSendBody(Strict):
    sender: str = Field(max_length=320, description="From: one of the tenant's addresses.")
    sender_name: str | None = Field(None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    to: str = Field(max_length=320)
    subject: str = Field(max_length=998)
    text: str = Field(max_length=1 << 20)
    html: str | None = Field(None, max_length=1 << 20)
    certified: StrictBool = Field(True, description="False: a plain email (certificate on demand).")
    pickup: StrictBool = Field(
        False, description="By registered pickup (a notice, then the content)."
    )
    send_at: datetime | None = Field(None, description="When (RFC 3339, with its offset).")
    hold_until_working_hours: HoldBody | None = Field(
        None, description="Held to the recipient's next working hour (after send_at, if given)."
    )


class ScheduledSendOut(BaseModel):
    id: str
    state: Literal["scheduled", "sent", "cancelled", "failed"]
    sender: str
    sender_name: str | None
    to: str
    subject: str
    certified: bool
    pickup: bool
    requested_at: datetime | None
    send_at: datetime
    hold: dict[str, Any] | None
    communication_id: str | None = Field(description="Once sent: GET /v1/communications/{id}.")
    error: str | None
    attempts: int
    created_by_agent_id: str | None
    created_at: datetime
    sent_at: datetime | None
    cancelled_at: datetime | None

    @classmethod
    def of(cls, s: ScheduledSend) -> ScheduledSendOut:
        return cls(
            id=s.id,
            state=s.state,
            sender=s.sender,
            sender_name=s.sender_name,
            to=s.to,
            subject=s.subject,
            certified=s.certified,
            pickup=s.pickup,
            requested_at=s.requested_at,
            send_at=s.send_at,
            hold=json.loads(s.hold) if s.hold else None,
            communication_id=s.communication_id,
            error=s.error,
            attempts=s.attempts,
            created_by_agent_id=s.created_by_agent_id,
            created_at=s.created_at,
            sent_at=s.sent_at,
            cancelled_at=s.cancelled_at,
        )


class ScheduledPage(BaseModel):
    items: list[ScheduledSendOut]
    next_cursor: str | None


class CancelBody(Strict):
    reason: str | None = Field(None, max_length=500, pattern=r"^[^\x00]*$")
