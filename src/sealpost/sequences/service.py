"""Reminder sequences: definitions, enrolments, the send of each due step, and stops.

The one rule everything here serves: **never a step after a stop**.  A step's message is
stored by its channel's group-commit writer, and the writer runs this service's guard
(:meth:`SequenceService._guard`) inside that same transaction, before the message's rows:
the guard locks the enrolment row and withdraws the message if the enrolment stopped, else
marks the step sent with the message's id and schedules the next step.  Every stop (paid,
cancel, opt-out, a reply, a pickup answer, a signature) updates the same row in its own
transaction.  The two serialise on that row: a stop that commits first withdraws the step;
a step that commits first was sent before the stop, and the stop's evidence says how many
steps were sent.

Each change of an enrolment is an evidence record on the subject ``enrolment``
(``urn:sealpost:event:Sequence*``); the messages themselves have their own records as
communications or SMS.  The stop is recorded on the enrolment, not on a step's message: an
enrolment may stop before any message exists, and its cause (a payment, an opt-out) is a
fact about the enrolment, not about a message.

Services never commit on a caller's behalf: each public method is one unit of work whose
transaction it opens (the request and the task boundary are these methods).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import uuid
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, meta
from sqlalchemy import Connection

from sealpost.db.engine import write_transaction
from sealpost.deadlines.calendars import BusinessCalendar, calendar_for
from sealpost.errors import InvalidInput, SealpostError
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord, Party, Reason, Subject, new_record
from sealpost.logging import get_logger
from sealpost.phones import checked_number
from sealpost.sequences.model import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    EMAIL_CHANNELS,
    FAILED,
    FAILED_CAUSE,
    SCHEDULED,
    SENT,
    SMS_CHANNELS,
    STEP_FAILED,
    STOPPED,
    Definition,
    Enrolment,
    EnrolmentNotFound,
    EnrolmentStopped,
    InvalidSequence,
    SenderNotAllowed,
    Sequence,
    SequenceNotFound,
    Step,
    StepState,
    StepWithdrawn,
)
from sealpost.sequences.ports import Messenger, OutgoingEmail, OutgoingSms
from sealpost.sequences.repository import SequenceRepository
from sealpost.sequences.schemas import EnrolmentIn, parse_definition
from sealpost.sequences.templates import render
from sealpost.sequences.variants import assign
from sealpost.sequences.windows import due_after, next_window

log = get_logger(__name__)

Clock = Callable[[], datetime]
MAX_BULK = 10_000
SUBJECT = "enrolment"


def utc_now() -> datetime:
    return datetime.now(UTC)


BUILT_IN = ("name", "payment_link", "opt_out_link", "language")
"""Variables every template may use without the enrolment giving them."""


@dataclass(frozen=True)
class EnrolResult:
    row: int
    enrolment: Enrolment | None
    error: SealpostError | None


class SequenceService:
    def __init__(
        self,
        repo: SequenceRepository,
        messenger: Messenger,
        *,
        public_url: str,
        clock: Clock = utc_now,
        name: str = "sequences",
        calendars: Callable[[str, str], BusinessCalendar] | None = None,
    ) -> None:
        self.repo = repo
        self.calendars = calendars
        """``(tenant, code)`` → the region's calendar with the tenant's own holidays and closure
        days (``PUT /v1/calendars/{code}/days``), as its legal terms count them; None: the
        public calendar only."""
        self.messenger = messenger
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{id(self):x}"
        self._sequences: dict[str, Sequence] = {}
        self._needs: dict[tuple[str, str], frozenset[str]] = {}

    def calendar_of(self, tenant_id: str) -> Callable[[str], BusinessCalendar]:
        """How this tenant's business days are counted (its own days on the region's)."""
        calendars = self.calendars
        if calendars is None:
            return calendar_for
        return lambda code: calendars(tenant_id, code)

    # -- definitions --------------------------------------------------------------------

    def create(self, tenant_id: str, data: Any) -> Sequence:
        """Check every field and template (sandboxed), store; immutable from then on."""
        definition = parse_definition(data)
        if definition.sender_email is not None:
            refused = self.messenger.refused_sender(tenant_id, definition.sender_email)
            if refused:
                raise SenderNotAllowed(f"sender.email: {refused}")
        now = self.clock()
        sequence_id = str(uuid.uuid4())
        self.repo.insert_sequence(
            {
                "id": sequence_id,
                "tenant_id": tenant_id,
                "name": definition.name,
                "version": 1,
                "definition": json.dumps(definition.raw, sort_keys=True),
                "created_at": now,
            }
        )
        return self.get(tenant_id, sequence_id)

    def get(self, tenant_id: str | None, sequence_id: str) -> Sequence:
        cached = self._sequences.get(sequence_id)
        if cached is not None and tenant_id in (None, cached.tenant_id):
            return cached
        row = self.repo.get_sequence(sequence_id, tenant_id)
        if row is None:
            raise SequenceNotFound(f"no sequence {sequence_id}")
        found = Sequence(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            version=row.version,
            definition=parse_definition(json.loads(row.definition)),
            created_at=row.created_at,
        )
        self._sequences[sequence_id] = found
        return found

    def all(self, tenant_id: str) -> list[Sequence]:
        return [self.get(tenant_id, row.id) for row in self.repo.list_sequences(tenant_id)]

    # -- enrolment ----------------------------------------------------------------------

    def enrol(self, tenant_id: str, sequence_id: str, item: EnrolmentIn) -> Enrolment:
        [result] = self.enrol_many(tenant_id, sequence_id, [item])
        if result.error is not None:
            raise result.error
        assert result.enrolment is not None
        return result.enrolment

    def enrol_many(
        self, tenant_id: str, sequence_id: str, items: Seq[EnrolmentIn | SealpostError]
    ) -> list[EnrolResult]:
        """Enrol each valid item in one transaction; an invalid one is reported and skipped
        (one bad row never sinks the others)."""
        sequence = self.get(tenant_id, sequence_id)
        now = self.clock()
        paying = bool(
            sequence.definition.payment_link_base or self.repo.payment_link_base(tenant_id)
        )
        results: list[EnrolResult] = []
        enrolments: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        external: list[dict[str, Any]] = []
        records: list[EvidenceRecord] = []
        for row, item in enumerate(items, start=1):
            if isinstance(item, SealpostError):
                results.append(EnrolResult(row, None, item))
                continue
            try:
                built = self._build(sequence, item, now, paying=paying)
            except SealpostError as exc:
                results.append(EnrolResult(row, None, exc))
                continue
            enrolment, step_row, ext, record = built
            results.append(EnrolResult(row, enrolment, None))
            enrolments.append(_enrolment_row(enrolment))
            steps.append(step_row)
            external += ext
            records.append(record)
        if enrolments:
            with write_transaction(self.repo.engine) as conn:
                self.repo.insert_enrolments_in(conn, enrolments, steps, external)
                append_evidence(conn, records)
        return results

    def _build(
        self, sequence: Sequence, item: EnrolmentIn, now: datetime, *, paying: bool
    ) -> tuple[Enrolment, dict[str, Any], list[dict[str, Any]], EvidenceRecord]:
        definition = sequence.definition
        enrolment_id = str(uuid.uuid4())
        variant = assign(enrolment_id, [(v.name, v.percentage) for v in definition.variants])
        chosen = definition.variant(variant)
        try:
            tz = ZoneInfo(item.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSequence(
                "time_zone", f"{item.time_zone!r} is not an IANA time zone"
            ) from None
        channels = {s.channel for v in definition.variants for s in v.steps}
        phone = item.person.phone
        if channels & SMS_CHANNELS and not phone:
            raise InvalidSequence("person.phone", "this sequence sends SMS: a phone is needed")
        if phone:
            try:
                phone = checked_number(phone)
            except InvalidInput as exc:
                raise InvalidSequence("person.phone", exc.message) from None
        if channels & EMAIL_CHANNELS and not item.person.email:
            raise InvalidSequence("person.email", "this sequence sends email: an email is needed")
        needs = self._needs_of(sequence, variant)
        if "payment_link" in needs and not paying:
            raise InvalidSequence(
                "payment_link_base",
                "the templates use payment_link: set payment_link_base in the sequence or in "
                "PUT /v1/settings/sequences",
            )
        missing = sorted(needs - set(item.variables) - set(BUILT_IN))
        if missing:
            raise InvalidSequence("variables", f"missing {', '.join(missing)}")
        first = chosen.steps[0]
        language = item.language or first.template.fallback_language
        planned, due = plan(first, now, tz, self.calendar_of(sequence.tenant_id))
        enrolment = Enrolment(
            id=enrolment_id,
            tenant_id=sequence.tenant_id,
            sequence_id=sequence.id,
            variant=variant,
            status=ACTIVE,
            stop_cause=None,
            outcome=None,
            person=_person(item.person.name, item.person.email, phone),
            language=language,
            time_zone=item.time_zone,
            variables=dict(item.variables),
            payment_token=secrets.token_urlsafe(24),
            opt_out_token=secrets.token_urlsafe(24),
            created_at=now,
            updated_at=now,
            stopped_at=None,
            external_ids=dict(item.external_ids),
        )
        step_row = _step_row(enrolment, first, planned, due)
        ext = [
            {"kind": kind, "external_id": value, "enrolment_id": enrolment_id}
            for kind, value in item.external_ids.items()
        ]
        record = self._record(
            enrolment,
            "SequenceEnrolled",
            now,
            {
                "sequence_id": sequence.id,
                "sequence_version": sequence.version,
                "variant": variant,
                "language": language,
                "time_zone": item.time_zone,
                "variables_sha256": hashlib.sha256(
                    json.dumps(dict(item.variables), sort_keys=True).encode()
                ).hexdigest(),
                "external_ids": dict(item.external_ids),
                "first_step_due": _iso(due),
            },
        )
        return enrolment, step_row, ext, record

    def _needs_of(self, sequence: Sequence, variant: str) -> frozenset[str]:
        """The variables a variant's templates use (parsed once, never run)."""
        key = (sequence.id, variant)
        found = self._needs.get(key)
        if found is None:
            env = Environment(autoescape=True)
            names: set[str] = set()
            for step in sequence.definition.variant(variant).steps:
                for loc in step.template.languages.values():
                    for source in (loc.subject, loc.text, loc.html):
                        if source:
                            names |= meta.find_undeclared_variables(env.parse(source))
            found = self._needs[key] = frozenset(names)
        return found

    def enrolment(self, tenant_id: str | None, enrolment_id: str) -> Enrolment:
        found = self.repo.get_enrolment(enrolment_id, tenant_id)
        if found is None:
            raise EnrolmentNotFound(f"no enrolment {enrolment_id}")
        return found

    def variables(self, sequence: Sequence, enrolment: Enrolment) -> dict[str, Any]:
        definition = sequence.definition
        out: dict[str, Any] = {
            **dict(enrolment.variables),
            "name": enrolment.person.name,
            "language": enrolment.language,
            "opt_out_link": f"{self.public_url}/sequences/opt-out/{enrolment.opt_out_token}",
        }
        base = definition.payment_link_base or self.repo.payment_link_base(enrolment.tenant_id)
        if base:
            out["payment_link"] = base + enrolment.payment_token
        return out

    # -- sending due steps ----------------------------------------------------------------

    def claim(self, limit: int = 100, lease_seconds: float = 120.0) -> list[StepState]:
        return self.repo.claim_due(
            self.owner, limit=limit, lease_seconds=lease_seconds, now=self.clock()
        )

    def send(self, step: StepState) -> str:
        """Render and hand the step's message to its channel; returns what became of it:
        ``sent``, ``withdrawn`` (stopped first), ``failed`` or ``retry``."""
        enrolment = self.enrolment(None, step.enrolment_id)
        sequence = self.get(None, enrolment.sequence_id)
        spec = sequence.definition.variant(enrolment.variant).steps[step.number - 1]
        if enrolment.status != ACTIVE:
            with write_transaction(self.repo.engine) as conn:
                self.repo.cancel_scheduled_in(conn, enrolment.id)
            return "withdrawn"
        guard = partial(self._guard, step, sequence, enrolment)
        try:
            rendered = render(
                spec.template,
                enrolment.language,
                self.variables(sequence, enrolment),
                field=f"steps.{step.number - 1}.template",
            )
            details = {"sequence_id": sequence.id, "enrolment_id": enrolment.id}
            details["sequence_step"] = str(step.number)
            if spec.channel in SMS_CHANNELS:
                assert enrolment.person.phone is not None
                self.messenger.sms(
                    OutgoingSms(
                        enrolment.tenant_id,
                        enrolment.person.phone,
                        rendered.text,
                        details,
                        guard_in=partial(guard, "sms"),
                        certificate=spec.channel.startswith("certified_"),
                        respect_opt_out=not spec.channel.startswith("certified_"),
                    )
                )
            else:
                definition = sequence.definition
                assert definition.sender_email is not None and enrolment.person.email
                self.messenger.email(
                    OutgoingEmail(
                        tenant_id=enrolment.tenant_id,
                        sender=definition.sender_email,
                        sender_name=definition.sender_name,
                        to=enrolment.person.email,
                        subject=rendered.subject or sequence.name,
                        text=rendered.text,
                        html=rendered.html,
                        pickup=spec.channel == "certified_email_pickup",
                        details=details,
                        guard_in=partial(guard, "communication"),
                        certificate=spec.channel.startswith("certified_"),
                        deadline=spec.deadline,
                    )
                )
        except StepWithdrawn:
            return "withdrawn"
        except SealpostError as exc:
            if exc.status >= 500 or exc.status == 429:  # storage full, busy: a passing
                # trouble of Sealpost's own, not the channel's answer: the step waits
                log.warning("sequence.step_held", step_id=step.id, code=exc.code)
                wait = float(getattr(exc, "retry_after", None) or 30)
                self.repo.release(
                    step.id,
                    self.owner,
                    self.clock() + timedelta(seconds=wait),
                    f"{exc.code}: {exc.message}",
                )
                return "retry"
            # the message cannot be sent on this channel
            log.info("sequence.step_refused", step_id=step.id, code=exc.code, error=exc.message)
            self.step_failed(step.id, exc.code, exc.message)
            return "failed"
        except Exception as exc:  # the database or the writer is away: try again later
            log.warning("sequence.step_retry", step_id=step.id, error=repr(exc))
            self.repo.release(step.id, self.owner, self.clock() + timedelta(seconds=30), repr(exc))
            return "retry"
        return "sent"

    def _guard(
        self,
        step: StepState,
        sequence: Sequence,
        enrolment: Enrolment,
        message_type: str,
        conn: Connection,
        message_id: str,
    ) -> None:
        """Inside the message's commit: the stop check and the send are one transaction."""
        current = self.repo.lock_enrolment_in(conn, enrolment.id)
        if current is None or current.status != ACTIVE:
            raise StepWithdrawn(f"enrolment {enrolment.id} is {current and current.status}")
        now = self.clock()
        steps = sequence.definition.variant(enrolment.variant).steps
        following: dict[str, Any] | None = None
        if step.number < len(steps):  # planned before anything is written: may raise
            nxt = steps[step.number]
            planned, due = plan(
                nxt, now, ZoneInfo(current.time_zone), self.calendar_of(current.tenant_id)
            )
            following = _step_row(current, nxt, planned, due)
        if not self.repo.mark_sent_in(conn, step.id, self.owner, message_type, message_id, now):
            raise StepWithdrawn(f"step {step.id} is no longer this sender's")
        records = [
            self._record(
                current,
                "SequenceStepSent",
                now,
                {
                    "step": step.number,
                    "channel": step.channel,
                    "message_type": message_type,
                    "message_id": message_id,
                    "planned_at": _iso(step.planned_at),
                },
            )
        ]
        if following is not None:
            self.repo.insert_step_in(conn, following)
        else:
            self.repo.set_status_in(conn, current.id, COMPLETED, now)
            records.append(
                self._record(current, "SequenceCompleted", now, {"steps_sent": step.number})
            )
        append_evidence(conn, records)

    def step_failed(self, step_id: str, code: str, message: str) -> None:
        """A step's message could not be sent or its channel reported a final failure: record
        it, then go on to the next channel or stop, as the step says (``on_failure``)."""
        with write_transaction(self.repo.engine) as conn:
            steps = {s.id: s for s in self._steps_of_step_in(conn, step_id)}
            step = steps.get(step_id)
            if step is None:
                return
            current = self.repo.lock_enrolment_in(conn, step.enrolment_id)
            if current is None or step.status not in (SCHEDULED, SENT):
                return
            now = self.clock()
            self.repo.set_step_in(
                conn,
                step.id,
                status=STEP_FAILED,
                error=f"{code}: {message}"[:500],
                lease_owner=None,
                lease_until=None,
            )
            records = [
                self._record(
                    current,
                    "SequenceStepFailed",
                    now,
                    {"step": step.number, "channel": step.channel, "message_id": step.message_id},
                    reasons=(Reason(code[:64], message[:500]),),
                )
            ]
            if current.status in (ACTIVE, COMPLETED):
                sequence = self.get(None, current.sequence_id)
                spec_steps = sequence.definition.variant(current.variant).steps
                spec = spec_steps[step.number - 1]
                by_number = {s.number: s for s in steps.values()}
                later = by_number.get(step.number + 1)
                if spec.on_failure == "stop" or step.number == len(spec_steps):
                    # no next channel to go on to: the enrolment failed
                    self.repo.cancel_scheduled_in(conn, current.id)
                    self.repo.set_status_in(conn, current.id, FAILED, now, cause=FAILED_CAUSE)
                    records.append(
                        self._record(
                            current,
                            "SequenceStopped",
                            now,
                            {"cause": FAILED_CAUSE, "via": "channel", "step": step.number},
                        )
                    )
                elif later is None:
                    nxt = spec_steps[step.number]
                    tz = ZoneInfo(current.time_zone)
                    self.repo.insert_step_in(
                        conn, _step_row(current, nxt, now, next_window(now, nxt.window, tz))
                    )
                elif later.status == SCHEDULED:  # the next channel, now (in its window)
                    nxt = spec_steps[step.number]
                    tz = ZoneInfo(current.time_zone)
                    self.repo.set_step_in(conn, later.id, due_at=next_window(now, nxt.window, tz))
            append_evidence(conn, records)

    def _steps_of_step_in(self, conn: Connection, step_id: str) -> list[StepState]:
        enrolment_id = self.repo.enrolment_of_step_in(conn, step_id)
        return [] if enrolment_id is None else self.repo.steps_in(conn, enrolment_id)

    # -- stops --------------------------------------------------------------------------

    def stop(
        self,
        tenant_id: str | None,
        enrolment_id: str,
        cause: str,
        *,
        via: str,
        details: Mapping[str, Any] | None = None,
        if_configured: bool = False,
    ) -> Enrolment:
        """Stop the enrolment for ``cause`` (one transaction, the enrolment row locked): no
        step is sent after this commits.  ``if_configured``: only if the definition's
        ``stop_on`` has the cause (stops that come from other domains' events)."""
        now = self.clock()
        with write_transaction(self.repo.engine) as conn:
            current = self.repo.lock_enrolment_in(conn, enrolment_id)
            if current is None or (tenant_id is not None and current.tenant_id != tenant_id):
                raise EnrolmentNotFound(f"no enrolment {enrolment_id}")
            if current.status in (STOPPED, FAILED):
                raise EnrolmentStopped(
                    f"enrolment {enrolment_id} already stopped ({current.stop_cause})",
                    current.status,
                    current.stop_cause,
                )
            definition = self.get(None, current.sequence_id).definition
            if if_configured and cause not in definition.stop_on:
                return current
            cancelled = self.repo.cancel_scheduled_in(conn, enrolment_id)
            sent = sum(1 for s in self.repo.steps_in(conn, enrolment_id) if s.status == SENT)
            self.repo.set_status_in(conn, enrolment_id, STOPPED, now, cause=cause)
            record = self._record(
                current,
                "SequenceStopped",
                now,
                {
                    "cause": cause,
                    "via": via,
                    "steps_sent": sent,
                    "steps_cancelled": cancelled,
                    **({"details": dict(details)} if details else {}),
                },
            )
            append_evidence(conn, [record])
        return self.enrolment(None, enrolment_id)

    def opt_out(self, token: str) -> Enrolment | None:
        """The opt-out page's POST: stops the enrolment (idempotent: a second POST is fine)."""
        found = self.repo.by_opt_out_token(token)
        if found is None:
            return None
        try:
            return self.stop(None, found.id, "opted_out", via="opt_out_link")
        except EnrolmentStopped:
            return self.enrolment(None, found.id)

    # -- records --------------------------------------------------------------------------

    def _record(
        self,
        enrolment: Enrolment,
        event: str,
        now: datetime,
        details: Mapping[str, Any],
        reasons: tuple[Reason, ...] = (),
    ) -> EvidenceRecord:
        person = enrolment.person
        return new_record(
            tenant_id=enrolment.tenant_id,
            event=event,
            subject=Subject(SUBJECT, enrolment.id),
            event_time=now,
            recipient=Party(person.email or person.phone or "-", person.name),
            reasons=reasons,
            details={"sequence_id": enrolment.sequence_id, "variant": enrolment.variant, **details},
        )


# -- pure helpers -----------------------------------------------------------------------


def plan(
    step: Step,
    previous: datetime,
    tz: ZoneInfo,
    calendars: Callable[[str], BusinessCalendar] = calendar_for,
) -> tuple[datetime, datetime]:
    """The step's time after its delay, and the first moment of its window from then;
    business days on ``calendars(code)`` (the tenant's own days included)."""
    code = step.delay.calendar
    calendar = calendars(code) if step.delay.unit == "business_days" and code else None
    planned = due_after(previous, step.delay, tz, calendar)
    return planned, next_window(planned, step.window, tz)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _person(name: str, email: str | None, phone: str | None) -> Any:
    from sealpost.sequences.model import Person

    return Person(name, email, phone)


def _enrolment_row(e: Enrolment) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant_id": e.tenant_id,
        "sequence_id": e.sequence_id,
        "variant": e.variant,
        "status": e.status,
        "person": json.dumps(
            {"name": e.person.name, "email": e.person.email, "phone": e.person.phone}
        ),
        "language": e.language,
        "time_zone": e.time_zone,
        "variables": json.dumps(dict(e.variables), sort_keys=True),
        "payment_token": e.payment_token,
        "opt_out_token": e.opt_out_token,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def _step_row(e: Enrolment, step: Step, planned: datetime, due: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "enrolment_id": e.id,
        "tenant_id": e.tenant_id,
        "number": step.number,
        "channel": step.channel,
        "status": SCHEDULED,
        "planned_at": planned,
        "due_at": due,
        "attempts": 0,
    }


__all__ = ["CANCELLED", "Definition", "SequenceService"]
