"""Unanswered-mail alerts (SLA): policies, each thread's clock, and the round that raises the
alerts once each — never outside service hours.

The clock (``sla_model``) runs while the customer wrote last (``waiting_on = "us"``) and counts
business time only.  :meth:`SlaService.tick` looks at every waiting thread of every tenant with
a policy and raises what fell due: a **warning** to the owner, the **breach** at the deadline
(a ``ReplyDeadlineMissed`` record: the company did not answer in the time it promised), the
**escalation** to the supervisors, and the optional **reassignment** (a ``ThreadAssigned``
record).  Each is raised once per thread and customer message that started the clock: the
unique key of ``archive_sla_alerts`` makes it so whatever number of workers run.

No alert is raised while the policy's service is closed (at night, at the weekend, on a
holiday): one that fell due then is raised at the next opening, its original due time in its
data — agents are not paged at 03:00 for a deadline nobody could meet at 03:00.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from sealpost.archive.events import SLA_BREACHED, SLA_ESCALATED, SLA_WARNING
from sealpost.archive.model import Thread, Viewer
from sealpost.archive.service import ArchiveService
from sealpost.archive.sla_model import REASSIGN_TO, SlaClock, SlaPolicy, clock_for
from sealpost.archive.sla_repository import SlaRepository
from sealpost.db.engine import write_transaction
from sealpost.deadlines.calendars import BusinessCalendar, calendar_for, normalised_code
from sealpost.deadlines.hours import ServiceHours, parse_spans, spans_json, zone
from sealpost.errors import Conflict, InvalidInput, NotFound
from sealpost.events.outbox import append_evidence
from sealpost.events.registry import NewEvent, new_event, record_reference
from sealpost.ledger.records import EvidenceRecord, Subject, new_record
from sealpost.ledger.repository import as_utc
from sealpost.logging import get_logger

log = get_logger(__name__)

RECORDS = {
    "warning": "ReplyDeadlineApproaching",
    "breached": "ReplyDeadlineMissed",
    "escalated": "ReplyEscalated",
}
EVENTS = {"warning": SLA_WARNING, "breached": SLA_BREACHED, "escalated": SLA_ESCALATED}
MAX_MINUTES = 60 * 24 * 366
"""The longest target or threshold: a year of business minutes."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terms(policy: SlaPolicy) -> dict[str, Any]:
    """A policy's terms as its records state them."""
    return {
        "team_id": policy.team_id,
        "name": policy.name,
        "first_reply_minutes": policy.first_reply_minutes,
        "reply_minutes": policy.reply_minutes,
        "warning_percent": policy.warning_percent,
        "warning_before_minutes": policy.warning_before_minutes,
        "escalate_after_minutes": policy.escalate_after_minutes,
        "reassign_after_minutes": policy.reassign_after_minutes,
        "reassign_to": policy.reassign_to,
        "calendar": policy.calendar,
        "time_zone": policy.time_zone,
        "hours": spans_json(policy.hours),
    }


class SlaService:
    def __init__(
        self,
        repo: SlaRepository,
        archive: ArchiveService,
        *,
        calendars: Callable[[str, str], BusinessCalendar] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.archive = archive
        self.calendars = calendars
        """``(tenant, code)`` → the region's calendar with the tenant's own days (the
        deadlines' ``PUT /v1/calendars/{code}/days``); None: the public calendar only."""
        self.clock = clock

    # -- policies ------------------------------------------------------------------------------

    def hours_of(self, policy: SlaPolicy) -> ServiceHours:
        calendar = None
        if policy.calendar:
            calendar = (
                self.calendars(policy.tenant_id, policy.calendar)
                if self.calendars is not None
                else calendar_for(policy.calendar)
            )
        return policy.service_hours(calendar)

    def _values(self, tenant_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Check a policy's fields (422 naming the field) and give its row's values."""
        for key in ("first_reply_minutes", "reply_minutes"):
            if not 1 <= int(data[key]) <= MAX_MINUTES:
                raise InvalidInput(f"{key}: 1 to {MAX_MINUTES} business minutes")
        for key in ("warning_before_minutes", "escalate_after_minutes", "reassign_after_minutes"):
            value = data.get(key)
            if value is not None and not 0 <= int(value) <= MAX_MINUTES:
                raise InvalidInput(f"{key}: 0 to {MAX_MINUTES} business minutes")
        percent = data.get("warning_percent")
        if percent is not None and not 1 <= int(percent) <= 99:
            raise InvalidInput("warning_percent: 1 to 99 (% of the target)")
        if percent is not None and data.get("warning_before_minutes") is not None:
            raise InvalidInput("warning_percent: give it or warning_before_minutes, not both")
        reassign_to = data.get("reassign_to") or "none"
        if reassign_to not in REASSIGN_TO:
            raise InvalidInput(f"reassign_to: one of {', '.join(REASSIGN_TO)}")
        if reassign_to != "none" and data.get("reassign_after_minutes") is None:
            raise InvalidInput("reassign_after_minutes: say when to reassign (after the deadline)")
        code = data.get("calendar")
        if code:
            code = normalised_code(code)
        zone(data["time_zone"])
        spans = parse_spans(data["hours"])
        ServiceHours(zone(data["time_zone"]), spans)  # open at least once a week
        team_id = data.get("team_id")
        if team_id is not None:
            with self.repo.engine.connect() as conn:
                if self.archive.repo.team_in(conn, tenant_id, team_id) is None:
                    raise InvalidInput(f"team_id: no team {team_id}")
        return {
            "scope": team_id or "tenant",
            "team_id": team_id,
            "name": (data.get("name") or "").strip()[:200],
            "first_reply_minutes": int(data["first_reply_minutes"]),
            "reply_minutes": int(data["reply_minutes"]),
            "warning_percent": percent,
            "warning_before_minutes": data.get("warning_before_minutes"),
            "escalate_after_minutes": data.get("escalate_after_minutes"),
            "reassign_after_minutes": data.get("reassign_after_minutes"),
            "reassign_to": reassign_to,
            "calendar": code or None,
            "time_zone": data["time_zone"],
            "hours": json.dumps(spans_json(spans)),
        }

    def _changed(
        self,
        conn: Connection,
        change: str,
        tenant_id: str,
        policy_id: str,
        before: SlaPolicy | None,
        after: SlaPolicy | None,
        changed_by: str,
        now: datetime,
    ) -> None:
        """A ``SlaPolicyChanged`` record (created, replaced or deleted; who; the terms before
        and after): a policy decides which breaches are recorded, so changing it is evidence
        too."""
        details: dict[str, Any] = {
            "change": change,
            "policy_id": policy_id,
            "changed_by": changed_by,
        }
        if before is not None:
            details["previous"] = _terms(before)
        if after is not None:
            details["policy"] = _terms(after)
        anchor = after or before
        assert anchor is not None
        if anchor.counts_from is not None:
            details["counts_from"] = _iso(anchor.counts_from)
        record = new_record(
            tenant_id=tenant_id,
            event="SlaPolicyChanged",
            subject=Subject("archive_sla_policy", policy_id),
            event_time=now,
            details=details,
        )
        append_evidence(conn, [record])

    def create_policy(
        self, tenant_id: str, data: dict[str, Any], *, changed_by: str = "admin"
    ) -> SlaPolicy:
        """A new policy (a ``SlaPolicyChanged`` record, ``created``).  Its clocks count mail
        older than it from the first creation of any policy of its scope, not from now."""
        values = self._values(tenant_id, data)
        now = self.clock()
        policy_id = str(uuid.uuid4())
        try:
            with write_transaction(self.repo.engine) as conn:
                self.repo.insert_policy_in(
                    conn,
                    {
                        "id": policy_id,
                        "tenant_id": tenant_id,
                        "created_at": now,
                        "updated_at": now,
                        **values,
                    },
                )
                self.repo.scope_started_in(conn, tenant_id, values["scope"], now)
                found = self.repo.policy_in(conn, tenant_id, policy_id)
                assert found is not None
                self._changed(conn, "created", tenant_id, policy_id, None, found, changed_by, now)
        except IntegrityError:
            which = f"team {values['team_id']}" if values["team_id"] else "the tenant"
            raise Conflict(f"{which} has a policy already: change it (PUT)") from None
        return found

    def replace_policy(
        self, tenant_id: str, policy_id: str, data: dict[str, Any], *, changed_by: str = "admin"
    ) -> SlaPolicy:
        """Change a policy's terms (a ``SlaPolicyChanged`` record, ``replaced``, with the
        terms before and after); running clocks keep their start."""
        if self.repo.policy(tenant_id, policy_id) is None:
            raise NotFound(f"no SLA policy {policy_id}")
        values = self._values(tenant_id, data)
        now = self.clock()
        try:
            with write_transaction(self.repo.engine) as conn:
                before = self.repo.policy_in(conn, tenant_id, policy_id)
                if before is None:
                    raise NotFound(f"no SLA policy {policy_id}")
                self.repo.update_policy_in(conn, policy_id, updated_at=now, **values)
                self.repo.scope_started_in(conn, tenant_id, values["scope"], now)
                found = self.repo.policy_in(conn, tenant_id, policy_id)
                assert found is not None
                self._changed(
                    conn, "replaced", tenant_id, policy_id, before, found, changed_by, now
                )
        except IntegrityError:
            raise Conflict("another policy has this scope (the tenant's, or this team's)") from None
        return found

    def delete_policy(self, tenant_id: str, policy_id: str, *, changed_by: str = "admin") -> None:
        """Stop a policy's clocks (a ``SlaPolicyChanged`` record, ``deleted``, with its terms);
        the alerts raised stay, and a policy created again for the scope counts from the
        scope's first policy, so a breach that was coming is not erased."""
        now = self.clock()
        with write_transaction(self.repo.engine) as conn:
            before = self.repo.policy_in(conn, tenant_id, policy_id)
            if before is None or not self.repo.delete_policy_in(conn, tenant_id, policy_id):
                raise NotFound(f"no SLA policy {policy_id}")
            self._changed(conn, "deleted", tenant_id, policy_id, before, None, changed_by, now)

    def policy(self, tenant_id: str, policy_id: str) -> SlaPolicy:
        found = self.repo.policy(tenant_id, policy_id)
        if found is None:
            raise NotFound(f"no SLA policy {policy_id}")
        return found

    @staticmethod
    def policy_for(policies: list[SlaPolicy], thread: Thread) -> SlaPolicy | None:
        """The thread's team's own policy, else the tenant's default (None: no clock)."""
        default = None
        for policy in policies:
            if policy.team_id is not None and policy.team_id == thread.team_id:
                return policy
            if policy.team_id is None:
                default = policy
        return default

    # -- one thread's clock --------------------------------------------------------------------

    def clock_of(
        self, conn: Connection, policy: SlaPolicy, hours: ServiceHours, thread: Thread
    ) -> SlaClock | None:
        if thread.waiting_on != "us":
            return None
        start = self.repo.clock_start_in(conn, thread)
        if start is None:
            return None
        # mail older than the policy is counted from the policy's creation: enabling alerts
        # on an existing archive does not page everyone about years-old unanswered mail
        # (the scope's first policy: deleting and re-creating one never restarts a clock)
        start = max(start, policy.counts_from or policy.created_at)
        return clock_for(policy, hours, start, first=thread.last_outbound_at is None)

    def thread_state(self, viewer: Viewer, thread_id: str) -> dict[str, Any]:
        """The SLA of a thread the viewer sees: its state now, the instants, alerts raised."""
        thread = self.archive.repo.thread(viewer, thread_id)
        if thread is None:
            raise NotFound(f"no thread {thread_id}")
        return self._state(self.repo.policies(viewer.tenant_id), thread, self.clock())

    def _state(self, policies: list[SlaPolicy], thread: Thread, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {
            "thread_id": thread.id,
            "subject": thread.subject,
            "owner_agent_id": thread.owner_agent_id,
            "team_id": thread.team_id,
            "policy_id": None,
            "state": "none",
            "alerts": [],
        }
        policy = self.policy_for(policies, thread)
        if policy is None:
            return out
        out["policy_id"] = policy.id
        hours = self.hours_of(policy)
        with self.repo.engine.connect() as conn:
            clock = self.clock_of(conn, policy, hours, thread)
            if clock is None:
                out["state"] = "paused"
                return out
            raised = self.repo.alerts_in(conn, thread.id, clock.started_at)
        out.update(
            state=clock.state(now),
            target=clock.target,
            target_minutes=clock.target_minutes,
            started_at=clock.started_at,
            warning_at=clock.warning_at,
            due_at=clock.due_at,
            escalate_at=clock.escalate_at,
            reassign_at=clock.reassign_at,
            business_minutes_elapsed=int(hours.elapsed_minutes(clock.started_at, now)),
            alerts=[
                {
                    "kind": r.kind,
                    "due_at": as_utc(r.due_at),
                    "raised_at": as_utc(r.raised_at),
                    "record_id": r.record_id,
                }
                for r in sorted(raised.values(), key=lambda r: (r.raised_at, r.kind))
            ],
        )
        return out

    def breaching(self, viewer: Viewer, limit: int = 500) -> list[dict[str, Any]]:
        """The threads the viewer sees whose reply is overdue (breached or escalated), the
        longest overdue first."""
        policies = self.repo.policies(viewer.tenant_id)
        if not policies:
            return []
        now = self.clock()
        found = []
        for thread in self.repo.waiting_threads(viewer.tenant_id, viewer):
            state = self._state(policies, thread, now)
            if state["state"] in ("breached", "escalated"):
                found.append(state)
        found.sort(key=lambda s: s["due_at"])
        return found[:limit]

    # -- the round -----------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Raise every alert due by ``now`` whose service is open now; returns how many."""
        now = now or self.clock()
        by_tenant: dict[str, list[SlaPolicy]] = {}
        for policy in self.repo.policies():
            by_tenant.setdefault(policy.tenant_id, []).append(policy)
        raised = 0
        for tenant_id, policies in by_tenant.items():
            hours: dict[str, ServiceHours | None] = {}
            for thread in self.repo.waiting_threads(tenant_id):
                found = self.policy_for(policies, thread)
                if found is None:
                    continue
                policy = found
                if policy.id not in hours:
                    try:
                        kit = self.hours_of(policy)
                        hours[policy.id] = kit if kit.is_open(now) else None
                    except InvalidInput as exc:  # a calendar the data no longer knows
                        log.error("archive.sla_policy_unusable", policy=policy.id, error=str(exc))
                        hours[policy.id] = None
                open_hours = hours[policy.id]
                if open_hours is None:  # closed: what fell due waits for the opening
                    continue
                with self.repo.engine.connect() as conn:
                    clock = self.clock_of(conn, policy, open_hours, thread)
                    if clock is None:
                        continue
                    done = self.repo.alerts_in(conn, thread.id, clock.started_at)
                pending = [k for k, at in clock.due(thread.owner_agent_id is not None) if at <= now]
                if all(k in done for k in pending):
                    continue
                with write_transaction(self.repo.engine) as conn:
                    raised += self._raise_in(conn, policy, open_hours, thread.id, now)
        return raised

    def _raise_in(
        self,
        conn: Connection,
        policy: SlaPolicy,
        hours: ServiceHours,
        thread_id: str,
        now: datetime,
    ) -> int:
        thread = self.archive.repo.lock_thread_in(conn, thread_id)
        if thread is None:
            return 0
        clock = self.clock_of(conn, policy, hours, thread)  # again, under the lock
        if clock is None:
            return 0
        done = self.repo.alerts_in(conn, thread.id, clock.started_at)
        records: list[EvidenceRecord] = []
        events: list[NewEvent] = []
        raised = 0
        for kind, due_at in clock.due(reassigns=True):
            if due_at > now or kind in done:
                continue
            if kind == "reassigned" and thread.owner_agent_id is None:
                continue
            details: dict[str, Any] = {
                "thread_id": thread.id,
                "policy_id": policy.id,
                "target": clock.target,
                "target_business_minutes": clock.target_minutes,
                "clock_started_at": _iso(clock.started_at),
                "deadline": _iso(clock.due_at),
                "due_at": _iso(due_at),
            }
            if thread.owner_agent_id:
                details["owner_agent_id"] = thread.owner_agent_id
            if thread.team_id:
                details["team_id"] = thread.team_id
            if kind == "reassigned":
                team = thread.team_id if policy.reassign_to == "team" else None
                record = self.archive._assign_in(
                    conn,
                    thread,
                    None,
                    team,
                    "sla_reassigned",
                    now,
                    None,
                    f"no reply by {_iso(clock.due_at)} (SLA policy {policy.id})",
                )
            else:
                record = new_record(
                    tenant_id=thread.tenant_id,
                    event=RECORDS[kind],
                    subject=Subject("archive_thread", thread.id),
                    event_time=now,
                    details=details,
                )
            row = {
                "tenant_id": thread.tenant_id,
                "thread_id": thread.id,
                "clock_start": clock.started_at,
                "kind": kind,
                "due_at": due_at,
                "raised_at": now,
                "policy_id": policy.id,
                "record_id": record.id,
            }
            if not self.repo.insert_alert_in(conn, row):
                continue  # another worker raised it first
            records.append(record)
            if kind in EVENTS:
                events.append(
                    new_event(
                        tenant_id=thread.tenant_id,
                        type=EVENTS[kind],
                        subject_type="archive_thread",
                        subject_id=thread.id,
                        time=now,
                        data={**details, **record_reference(record)},
                        record_id=record.id,
                    )
                )
            self._notify_in(conn, kind, thread, clock, due_at, now)
            raised += 1
            if kind == "reassigned":
                moved = self.archive.repo.lock_thread_in(conn, thread.id)
                assert moved is not None
                thread = moved
        append_evidence(conn, records, events)
        return raised

    def _notify_in(
        self,
        conn: Connection,
        kind: str,
        thread: Thread,
        clock: SlaClock,
        due_at: datetime,
        now: datetime,
    ) -> None:
        subject = thread.subject[:160] or "(no subject)"
        deadline = _iso(clock.due_at)
        supervisors = self.repo.supervisors_in(conn, thread.tenant_id)
        team = (
            self.repo.team_agents_in(conn, thread.tenant_id, thread.team_id)
            if thread.team_id
            else []
        )
        if kind == "warning":
            to = [thread.owner_agent_id] if thread.owner_agent_id else team or supervisors
            text = f"Reply due by {deadline}: {subject}"
        elif kind == "breached":
            to = [thread.owner_agent_id] if thread.owner_agent_id else team or supervisors
            text = f"Reply deadline {deadline} missed: {subject}"
        elif kind == "escalated":
            to = supervisors
            text = f"Escalated: no reply since {_iso(clock.started_at)} (due {deadline}): {subject}"
        else:  # reassigned: the owner who lost it, and whoever may take it now
            to = [a for a in [thread.owner_agent_id, *team, *supervisors] if a]
            text = f"Reassigned, no reply by {deadline}: {subject}"
        late = now - due_at
        if late >= timedelta(minutes=1):
            text += f" (due {_iso(due_at)}, held to service hours)"
        for agent_id in dict.fromkeys(to):
            if agent_id is None:
                continue
            self.archive.repo.notify_in(
                conn,
                tenant_id=thread.tenant_id,
                agent_id=agent_id,
                kind=f"sla_{kind}",
                text=text[:1000],
                now=now,
                thread_id=thread.id,
            )
