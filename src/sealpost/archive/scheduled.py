"""Scheduled sends: a message to go out later — at a time, or held until the recipient's
working hours — cancellable until it is sent, sent by **the sequences' scheduler**.

There is one scheduler: ``sequences.tasks.Scheduler`` claims due sequence steps and, in the
same round, due scheduled sends (this service's :meth:`claim` and :meth:`send`, handed to it
by the composition root, since the archive and the sequences do not import each other).  A
send is leased (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and handed to the :class:`Sender`
port, which communications' certified mailer implements: the message gets exactly the
evidence of any communication (SubmissionAcceptance, relay, delivery, its certificate when
certified).  The guard runs inside the message's own commit and marks the send ``sent``
only if it is still ``scheduled`` and still this worker's; a cancel locks the same row.  So a
cancel and a send serialise (never a send after a cancel), and a worker that dies between
its claim and its send leaves a lease that expires: another worker sends it, once.

Holding to working hours uses the deadlines' business-hours kit (``deadlines.hours``): the
recipient's time zone, a business calendar for its holidays, and its working hours (by
default Monday to Friday 09:00-18:00).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection

from sealpost.archive.events import SCHEDULED_SEND_FAILED, SCHEDULED_SEND_SENT
from sealpost.archive.model import Viewer
from sealpost.archive.ports import ScheduledEmail, Sender
from sealpost.archive.scheduled_model import (
    CANCELLED,
    DEFAULT_WORKING_HOURS,
    FAILED,
    SCHEDULED,
    SENT,
    STATES,
    ScheduledSend,
)
from sealpost.archive.scheduled_repository import ScheduledRepository
from sealpost.db.engine import write_transaction
from sealpost.deadlines.calendars import BusinessCalendar, calendar_for, normalised_code
from sealpost.deadlines.hours import ServiceHours, parse_spans, spans_json, zone
from sealpost.errors import Conflict, Forbidden, InvalidInput, NotFound, SealpostError
from sealpost.events.outbox import append_evidence
from sealpost.events.registry import new_event
from sealpost.ledger.records import Party, Subject, new_record
from sealpost.logging import get_logger

log = get_logger(__name__)

MAX_AHEAD = timedelta(days=731)
"""The latest a message may be scheduled: two years ahead."""
PAST_TOLERANCE = timedelta(minutes=5)
"""A ``send_at`` this little in the past (a client's clock) means "now"; older is refused."""
MAX_TEXT = 1 << 20


class SendWithdrawn(Conflict):
    """Raised by the send guard inside the message's own commit: the send was cancelled (or
    is no longer this worker's), so the message is not stored and never goes out."""

    code = "scheduled_send_withdrawn"
    title = "The scheduled send was withdrawn before it was sent"


class SenderNotAllowed(InvalidInput):
    """The From is not of the tenant's registered domains: the error ``POST
    /v1/communications`` gives for the same From (communications' own class, same code)."""

    code = "sender_not_allowed"
    title = "This sender may not send for the tenant"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(value: str, field: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(value) > 320
        or any(c in value for c in " \r\n<>,")
    ):
        raise InvalidInput(f"{field}: an email address such as ana@example.com")
    return value


class ScheduledSendService:
    def __init__(
        self,
        repo: ScheduledRepository,
        sender: Sender,
        *,
        calendars: Callable[[str, str], BusinessCalendar] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        name: str = "archive-scheduled",
    ) -> None:
        self.repo = repo
        self.sender = sender
        self.calendars = calendars
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{id(self):x}"

    # -- scheduling ----------------------------------------------------------------------------

    def _hold(
        self, tenant_id: str, hold: dict[str, Any], start: datetime
    ) -> tuple[datetime, dict[str, Any]]:
        """The first instant at or after ``start`` in the recipient's working hours."""
        tz = hold.get("time_zone") or ""
        code = hold.get("calendar")
        calendar = None
        if code:
            code = normalised_code(code)
            calendar = self.calendars(tenant_id, code) if self.calendars else calendar_for(code)
        spans = parse_spans(hold.get("hours") or DEFAULT_WORKING_HOURS)
        hours = ServiceHours(zone(tz, "hold_until_working_hours.time_zone"), spans, calendar)
        terms = {"time_zone": tz, "calendar": code, "hours": spans_json(spans)}
        return hours.next_open(start), terms

    def create(self, viewer: Viewer, data: dict[str, Any]) -> ScheduledSend:
        """Schedule a message (see the module docstring); a ``SendScheduled`` record."""
        if viewer.role == "auditor":
            raise Forbidden("an auditor's key is read-only")
        sender = _address(data["sender"], "sender")
        refused = self.sender.refused_sender(viewer.tenant_id, sender)
        if refused is not None:
            raise SenderNotAllowed(f"sender: {refused}")
        to = _address(data["to"], "to")
        subject = data["subject"]
        if not subject.strip() or len(subject) > 998 or any(c in subject for c in "\r\n\0"):
            raise InvalidInput("subject: 1 to 998 characters on one line")
        text, html = data["text"], data.get("html")
        if not text.strip() or len(text) > MAX_TEXT or (html is not None and len(html) > MAX_TEXT):
            raise InvalidInput(f"text: 1 to {MAX_TEXT} characters (html likewise)")
        if "\0" in text or (html and "\0" in html):
            raise InvalidInput("text: no NUL characters")
        pickup = bool(data.get("pickup"))
        certified = bool(data.get("certified", True)) or pickup
        now = self.clock()
        requested: datetime | None = data.get("send_at")
        hold = data.get("hold_until_working_hours")
        if requested is None and hold is None:
            raise InvalidInput("send_at: give a time, or hold_until_working_hours, or both")
        if requested is not None:
            if requested.tzinfo is None or requested.utcoffset() is None:
                raise InvalidInput("send_at: an instant with its offset (RFC 3339)")
            if requested < now - PAST_TOLERANCE:
                raise InvalidInput("send_at: in the past")
            if requested > now + MAX_AHEAD:
                raise InvalidInput("send_at: at most two years ahead")
            requested = requested.astimezone(UTC)
        send_at = max(requested or now, now)
        terms = None
        if hold is not None:
            send_at, terms = self._hold(viewer.tenant_id, hold, send_at)
        send_id = str(uuid.uuid4())
        details: dict[str, Any] = {
            "scheduled_send_id": send_id,
            "send_at": _iso(send_at),
            "certified": certified,
            "pickup": pickup,
            "subject": subject[:500],
        }
        if requested is not None:
            details["requested_at"] = _iso(requested)
        if terms is not None:
            details["hold_until_working_hours"] = terms
        if viewer.agent is not None:
            details["agent_id"] = viewer.agent.id
        record = new_record(
            tenant_id=viewer.tenant_id,
            event="SendScheduled",
            subject=Subject("archive_scheduled_send", send_id),
            event_time=now,
            sender=Party(sender),
            recipient=Party(to),
            details=details,
        )
        with write_transaction(self.repo.engine) as conn:
            self.repo.insert_in(
                conn,
                {
                    "id": send_id,
                    "tenant_id": viewer.tenant_id,
                    "created_by_agent_id": viewer.agent.id if viewer.agent else None,
                    "sender": sender,
                    "sender_name": (data.get("sender_name") or "").strip()[:200] or None,
                    "to_address": to,
                    "subject": subject,
                    "text": text,
                    "html": html,
                    "certified": certified,
                    "pickup": pickup,
                    "requested_at": requested,
                    "send_at": send_at,
                    "hold": json.dumps(terms) if terms is not None else None,
                    "state": SCHEDULED,
                    "created_at": now,
                },
            )
            append_evidence(conn, [record])
        found = self.repo.by_id(send_id)
        assert found is not None
        return found

    def get(self, viewer: Viewer, send_id: str) -> ScheduledSend:
        found = self.repo.get(viewer, send_id)
        if found is None:
            raise NotFound(f"no scheduled send {send_id}")
        return found

    def page(
        self,
        viewer: Viewer,
        *,
        state: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[ScheduledSend]:
        if state is not None and state not in STATES:
            raise InvalidInput(f"state: one of {', '.join(STATES)}")
        return self.repo.page(viewer, state=state, after=after, limit=limit)

    def cancel(self, viewer: Viewer, send_id: str, reason: str | None = None) -> ScheduledSend:
        """Withdraw a send not yet sent (a ``ScheduledSendCancelled`` record); 409 once it was
        sent (or failed).  Cancelling a cancelled send changes nothing."""
        if viewer.role == "auditor":
            raise Forbidden("an auditor's key is read-only")
        if self.repo.get(viewer, send_id) is None:
            raise NotFound(f"no scheduled send {send_id}")
        now = self.clock()
        with write_transaction(self.repo.engine) as conn:
            current = self.repo.lock_in(conn, send_id)
            assert current is not None
            if current.state == SENT:
                raise Conflict(
                    f"already sent, as communication {current.communication_id}: too late"
                )
            if current.state == FAILED:
                raise Conflict("this send failed: there is nothing left to cancel")
            if current.state == SCHEDULED:
                self.repo.set_in(
                    conn,
                    send_id,
                    state=CANCELLED,
                    cancelled_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
                details: dict[str, Any] = {
                    "scheduled_send_id": send_id,
                    "send_at": _iso(current.send_at),
                }
                if viewer.agent is not None:
                    details["agent_id"] = viewer.agent.id
                if reason:
                    details["reason"] = reason[:500]
                append_evidence(
                    conn,
                    [
                        new_record(
                            tenant_id=current.tenant_id,
                            event="ScheduledSendCancelled",
                            subject=Subject("archive_scheduled_send", send_id),
                            event_time=now,
                            details=details,
                        )
                    ],
                )
        found = self.repo.by_id(send_id)
        assert found is not None
        return found

    # -- sending (called by the sequences' scheduler round) -------------------------------------

    def claim(self, limit: int = 100, lease_seconds: float = 120.0) -> list[ScheduledSend]:
        return self.repo.claim_due(
            self.owner, limit=limit, lease_seconds=lease_seconds, now=self.clock()
        )

    def send(self, item: ScheduledSend) -> str:
        """Hand a claimed send to the Sender; returns ``sent``, ``withdrawn`` (cancelled
        first, or taken over), ``failed`` (the message was refused) or ``retry``."""
        try:
            self.sender.email(
                ScheduledEmail(
                    tenant_id=item.tenant_id,
                    sender=item.sender,
                    sender_name=item.sender_name,
                    to=item.to,
                    subject=item.subject,
                    text=item.text,
                    html=item.html,
                    pickup=item.pickup,
                    certificate=item.certified,
                    details={"scheduled_send_id": item.id},
                    guard_in=partial(self._guard, item.id),
                )
            )
        except SendWithdrawn:
            return "withdrawn"
        except SealpostError as exc:
            if exc.status >= 500 or exc.status == 429:  # Sealpost's own passing trouble
                wait = float(getattr(exc, "retry_after", None) or 30)
                self.repo.release(
                    item.id, self.owner, self.clock() + timedelta(seconds=wait), exc.message
                )
                return "retry"
            log.info("archive.scheduled_send_refused", send_id=item.id, code=exc.code)
            self._failed(item.id, f"{exc.code}: {exc.message}")
            return "failed"
        except Exception as exc:  # the database or the writer is away: try again later
            log.warning("archive.scheduled_send_retry", send_id=item.id, error=repr(exc))
            self.repo.release(item.id, self.owner, self.clock() + timedelta(seconds=30), repr(exc))
            return "retry"
        return "sent"

    def _guard(self, send_id: str, conn: Connection, communication_id: str) -> None:
        """Inside the message's commit: the cancel check and the send are one transaction."""
        current = self.repo.lock_in(conn, send_id)
        if current is None or current.state != SCHEDULED or current.lease_owner != self.owner:
            raise SendWithdrawn(f"scheduled send {send_id} is {current and current.state}")
        now = self.clock()
        self.repo.set_in(
            conn,
            send_id,
            state=SENT,
            sent_at=now,
            communication_id=communication_id,
            lease_owner=None,
            lease_until=None,
            error=None,
        )
        append_evidence(
            conn,
            [],
            [
                new_event(
                    tenant_id=current.tenant_id,
                    type=SCHEDULED_SEND_SENT,
                    subject_type="archive_scheduled_send",
                    subject_id=send_id,
                    time=now,
                    data={
                        "scheduled_send_id": send_id,
                        "communication_id": communication_id,
                        "send_at": _iso(current.send_at),
                    },
                )
            ],
        )

    def _failed(self, send_id: str, error: str) -> None:
        now = self.clock()
        with write_transaction(self.repo.engine) as conn:
            current = self.repo.lock_in(conn, send_id)
            if current is None or current.state != SCHEDULED:
                return
            self.repo.set_in(
                conn, send_id, state=FAILED, error=error[:500], lease_owner=None, lease_until=None
            )
            append_evidence(
                conn,
                [],
                [
                    new_event(
                        tenant_id=current.tenant_id,
                        type=SCHEDULED_SEND_FAILED,
                        subject_type="archive_scheduled_send",
                        subject_id=send_id,
                        time=now,
                        data={"scheduled_send_id": send_id, "error": error[:500]},
                    )
                ],
            )
