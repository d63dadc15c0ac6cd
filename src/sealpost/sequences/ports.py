"""What sequences need from outside their domain: a way to send each step's message.

Each step is an ordinary communication (email channels) or SMS (SMS channels), with its own
evidence; the composition root (``sealpost.app``) adapts communications' submissions and the
SMS service to :class:`Messenger`.  ``guard_in`` is the heart of "never a step after a stop":
the adapter hands it to the message's own group-commit writer, which runs it *inside the
transaction that stores the message*, before the message's rows; it locks the enrolment row,
and raises :class:`~sealpost.sequences.model.StepWithdrawn` when the enrolment stopped (the
message is then not stored, and only that message fails), else it marks the step sent with
the message's id.  A stop updates the same enrolment row, so the two serialise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection

Guard = Callable[[Connection, str], None]
"""``guard(conn, message_id)``: runs in the message's commit transaction; raising withdraws
the message (only it)."""


@dataclass(frozen=True)
class OutgoingEmail:
    tenant_id: str
    sender: str
    sender_name: str | None
    to: str
    subject: str
    text: str
    html: str | None
    pickup: bool
    """Registered pickup (``certified_email_pickup``): a notice, the content on acceptance."""
    details: Mapping[str, str]
    guard_in: Guard
    certificate: bool = True
    """False for a plain ``email`` step: its certificate only when asked for."""
    deadline: Mapping[str, Any] | None = None
    """A legal term on this message (the step's ``deadline`` rule, as JSON)."""
    capture_replies: bool = True
    """The message gets its own reply address (``Reply-To`` beside the sender), so that an
    answer is recorded on it and stops the enrolment (a direct email only; ignored for
    pickup, whose recipient answers on the page)."""


@dataclass(frozen=True)
class OutgoingSms:
    tenant_id: str
    to: str
    text: str
    details: Mapping[str, str] = field(default_factory=dict)
    guard_in: Guard | None = None
    certificate: bool = True
    """False for a plain ``sms`` step: its certificate only when asked for."""
    respect_opt_out: bool = False
    """Refused (``sms_opted_out``) when the number answered STOP to one of the tenant's SMS:
    a plain ``sms`` reminder respects it; a ``certified_sms`` notice the law requires goes out
    whatever the number answered before."""


class Messenger(Protocol):
    def refused_sender(self, tenant_id: str, address: str) -> str | None:
        """Why ``address`` may not be the tenant's From (not one of its sending domains), or
        None: checked when a sequence is defined, and again by each send."""
        ...

    def email(self, mail: OutgoingEmail) -> str:
        """Accept the email durably (its SubmissionAcceptance committed with the guard's
        effects); returns its communication id.  Raises what the guard raised, or an
        ``InvalidInput`` for a message that cannot be accepted."""
        ...

    def sms(self, sms: OutgoingSms) -> str:
        """Accept the SMS durably, likewise; returns its SMS id."""
        ...
