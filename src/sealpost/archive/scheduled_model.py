"""A scheduled send: a message (plain, certified, or by registered pickup) to go out at a
time, or held until the recipient's working hours (frozen dataclass; table in ``tables.py``).

States: ``scheduled`` → ``sent`` (with its communication id) | ``cancelled`` | ``failed``
(the message was refused, with its error).  Only ``scheduled`` changes, and only once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SCHEDULED = "scheduled"
SENT = "sent"
CANCELLED = "cancelled"
FAILED = "failed"
STATES = (SCHEDULED, SENT, CANCELLED, FAILED)

DEFAULT_WORKING_HOURS = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
"""The recipient's working hours when a hold names none: Monday to Friday, 09:00 to 18:00."""


@dataclass(frozen=True)
class ScheduledSend:
    id: str
    tenant_id: str
    created_by_agent_id: str | None
    sender: str
    sender_name: str | None
    to: str
    subject: str
    text: str
    html: str | None
    certified: bool
    pickup: bool
    requested_at: datetime | None
    """The time asked for (None: as soon as the recipient's working hours allow)."""
    send_at: datetime
    """When it goes: the time asked for, or held to the recipient's next working hour."""
    hold: str | None
    """The hold's terms (time zone, calendar, hours) as JSON, when held."""
    state: str
    attempts: int
    communication_id: str | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    cancelled_at: datetime | None
    lease_owner: str | None = None
