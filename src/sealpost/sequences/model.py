"""Reminder sequences as values: a definition's steps and variants, an enrolment, a step.

A definition is immutable once created (a change is a new sequence, with its own id): an
enrolment always runs the exact steps and templates it was enrolled in, so its timeline and
report can be read years later against the definition stored with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sealpost.errors import Conflict, InvalidInput, NotFound
from sealpost.sequences.templates import StepTemplate
from sealpost.sequences.windows import Delay, SendWindow

CHANNELS = ("sms", "email", "certified_email", "certified_email_pickup", "certified_sms")
SMS_CHANNELS = frozenset({"sms", "certified_sms"})
EMAIL_CHANNELS = frozenset({"email", "certified_email", "certified_email_pickup"})

ON_FAILURE = ("next", "stop")

# the causes an enrolment stops on (``stop_on`` in a definition; default: all)
PAID = "paid"
REPLIED = "replied"
PICKUP_ACCEPTED = "pickup_accepted"
PICKUP_REJECTED = "pickup_rejected"
SIGNED = "signed"
OPTED_OUT = "opted_out"
CANCELLED = "cancelled"
FAILED_CAUSE = "failed"
STOP_CAUSES = (PAID, REPLIED, PICKUP_ACCEPTED, PICKUP_REJECTED, SIGNED, OPTED_OUT, CANCELLED)
ALWAYS = frozenset({OPTED_OUT, CANCELLED})
"""Causes a definition cannot turn off: a person's opt-out and the tenant's own cancel."""

# enrolment statuses
ACTIVE, STOPPED, COMPLETED, FAILED = "active", "stopped", "completed", "failed"

# step statuses
SCHEDULED, SENT, STEP_FAILED, CANCELLED_STEP = "scheduled", "sent", "failed", "cancelled"


@dataclass(frozen=True)
class Step:
    number: int
    """1-based, in the variant's order."""
    channel: str
    template: StepTemplate
    delay: Delay
    """From the enrolment (first step) or the previous step's send."""
    window: SendWindow
    on_failure: str
    deadline: Mapping[str, Any] | None = None
    """A legal term on the step's message (``sealpost.deadlines.rules.DeadlineRule`` as JSON):
    sealed with its SubmissionAcceptance, started when its trigger is recorded."""


@dataclass(frozen=True)
class Variant:
    name: str
    percentage: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Definition:
    name: str
    variants: tuple[Variant, ...]
    stop_on: frozenset[str]
    sender_email: str | None
    sender_name: str | None
    payment_link_base: str | None
    raw: Mapping[str, Any]
    """The definition as accepted (normalised JSON): stored, and shown by the API."""

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


@dataclass(frozen=True)
class Sequence:
    id: str
    tenant_id: str
    name: str
    version: int
    definition: Definition
    created_at: datetime


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class Enrolment:
    id: str
    tenant_id: str
    sequence_id: str
    variant: str
    status: str
    stop_cause: str | None
    outcome: str | None
    person: Person
    language: str
    time_zone: str
    variables: Mapping[str, Any]
    payment_token: str
    opt_out_token: str
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    external_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepState:
    id: str
    enrolment_id: str
    tenant_id: str
    number: int
    channel: str
    status: str
    planned_at: datetime
    due_at: datetime | None
    sent_at: datetime | None
    message_type: str | None
    message_id: str | None
    attempts: int
    error: str | None


class SequenceNotFound(NotFound):
    code = "sequence_not_found"
    title = "No such sequence"


class EnrolmentNotFound(NotFound):
    code = "enrolment_not_found"
    title = "No such enrolment"


class SenderNotAllowed(InvalidInput):
    """The sequence's ``sender.email`` is not on one of the tenant's sending domains: the
    same rule, and code, as ``POST /v1/communications``."""

    code = "sender_not_allowed"
    title = "The sender is not one of the tenant's domains"


class InvalidSequence(InvalidInput):
    """A definition or enrolment field that cannot be served; ``field`` is its path."""

    code = "invalid_sequence"
    title = "The sequence or enrolment is invalid"
    problem_fields = ("field",)

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EnrolmentStopped(Conflict):
    """The enrolment already stopped (or completed and cannot stop for this cause)."""

    code = "enrolment_stopped"
    title = "The enrolment has already stopped"
    problem_fields = ("enrolment_status", "stop_cause")

    def __init__(self, message: str, status: str, stop_cause: str | None) -> None:
        super().__init__(message)
        self.enrolment_status = status
        self.stop_cause = stop_cause


class StepWithdrawn(Conflict):
    """Raised by the send guard inside the message's own commit: the enrolment stopped (or the
    step is no longer this sender's), so the message is not stored and never goes out."""

    code = "step_withdrawn"
    title = "The step was withdrawn before it was sent"
