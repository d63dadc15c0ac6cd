"""Certified SMS: accept (durably, with SubmissionAcceptance), submit through an operator,
and turn delivery receipts into evidence.

Evidence semantics (ETSI EN 319 522-3 Table 2; the operator is not a registered delivery
service, group F): the operator's submit response is RelayToNonERDS, with its message id per
segment, and means only that it took the message; a refusal is RelayToNonERDSFailure with the
operator's status as the EventReason.  Only final receipts, one per segment, decide delivery:
every segment delivered gives Sealpost's own ``DeliveryReported`` (Table 2 has no event for a
non-ERDS system's report, and ContentConsignment would claim a consignment by a registered
delivery service); a bad final state for any segment gives ``NonDelivery`` with the operator's
state and error; no final receipt in time gives ``DeliveryUnconfirmed``, never "delivered".
The SHA-256 of each deciding raw receipt is in the evidence.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sealpost.certificates.secrets import ACCESS_SECRET
from sealpost.errors import Conflict
from sealpost.ledger.records import (
    ContentInfo,
    ContentPart,
    EvidenceRecord,
    Party,
    Reason,
    Subject,
    new_record,
)
from sealpost.phones import checked_number as checked_number
from sealpost.sms.batching import GroupCommit
from sealpost.sms.model import (
    DELIVERED,
    FAILED,
    QUEUED,
    UNCONFIRMED,
    UNDELIVERED,
    Segment,
    Sms,
    Split,
    message_state,
    split,
)
from sealpost.sms.providers import (
    DeliveryReport,
    OutboundSms,
    PermanentFailure,
    Submitted,
    TemporaryFailure,
)
from sealpost.sms.repository import (
    Decision,
    SendOutcome,
    SmsRepository,
    StoredReport,
    row_sms,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SmsSettings:
    """What the service needs of the settings."""

    default_sender: str
    unconfirmed_after_seconds: float
    retry_initial_seconds: float
    retry_max_seconds: float


@dataclass(frozen=True)
class Accepted:
    sms: Sms
    replayed: bool


def _text_content(text: str, parts: tuple[str, ...]) -> ContentInfo:
    """The text's UTF-8 digest, and each segment's, as the record's content (UserContentInfo)."""
    data = text.encode()
    return ContentInfo(
        hashlib.sha256(data).hexdigest(),
        len(data),
        tuple(
            ContentPart(
                "text/plain; charset=utf-8",
                hashlib.sha256(p.encode()).hexdigest(),
                len(p.encode()),
                f"segment-{i + 1}",
            )
            for i, p in enumerate(parts)
        ),
    )


def _segment_facts(segments: list[Segment]) -> list[dict[str, Any]]:
    return [
        {
            "number": s.number + 1,
            "operator_message_id": s.message_id,
            "state": s.state,
            "status": s.status,
            "done_at": s.reported_at.strftime("%Y-%m-%dT%H:%M:%SZ") if s.reported_at else None,
            "report_sha256": s.report_sha256,
        }
        for s in segments
    ]


class SmsService:
    """Accepts SMS, records their submission and decides their delivery from receipts.

    It is also the :class:`~sealpost.sms.providers.ReportSink` the adapters report into."""

    def __init__(
        self,
        repo: SmsRepository,
        settings: SmsSettings,
        clock: Clock = utc_now,
        *,
        on_accept: Callable[[], object] | None = None,
    ):
        self.repo = repo
        self.settings = settings
        self.clock = clock
        self.on_accept = on_accept
        """Called after an SMS is committed (wakes the sender at once)."""
        self._accepts: GroupCommit[tuple[dict[str, Any], EvidenceRecord], Sms | None] = GroupCommit(
            repo.engine, repo.insert_many_in, "sms-accept"
        )
        self._reports: GroupCommit[tuple[StoredReport, datetime], bool] = GroupCommit(
            repo.engine,
            lambda conn, items: repo.store_reports_in(conn, items, self.decide),
            "sms-receipts",
        )

    def close(self) -> None:
        """Stop the group-commit writers (after the adapters and the API stopped)."""
        self._accepts.close()
        self._reports.close()

    # -- accepting --------------------------------------------------------------------------

    @staticmethod
    def preview(text: str) -> Split:
        return split(text)

    def accept(
        self,
        *,
        tenant_id: str,
        to: str,
        text: str,
        sender: str | None = None,
        details: Mapping[str, Any] | None = None,
        identification: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        request_sha256: str | None = None,
        access_secret: bool = False,
    ) -> Accepted:
        """Store the message and its SubmissionAcceptance in one transaction (then 201).

        ``access_secret``: the text carries a one-time code or a single-use link (another
        domain's ``SmsSender`` port says so).  The record states ``access_secret: true`` and
        no per-segment digests; the text is sent and its digest sealed as usual, but the API
        and the certificate never show it to the tenant (``sealpost.certificates.secrets``)."""
        number = checked_number(to)
        parts = split(text)
        now = self.clock()
        sms_id = str(uuid.uuid4())
        originator = sender or self.settings.default_sender
        record = new_record(
            tenant_id=tenant_id,
            event="SubmissionAcceptance",
            subject=Subject("sms", sms_id),
            event_time=now,
            submission_time=now,
            sender=Party(originator, None, dict(identification or {}) or None),
            recipient=Party(number),
            content=_text_content(text, () if access_secret else parts.parts),
            details={
                "channel": "sms",
                **({ACCESS_SECRET: True} if access_secret else {}),
                "encoding": parts.encoding,
                "segments": parts.segments,
                "units": parts.units,
                **({"details": dict(details)} if details else {}),
            },
        )
        row = {
            "id": sms_id,
            "tenant_id": tenant_id,
            "status": QUEUED,
            "sender": originator[:32],
            "recipient": number,
            "text": text,
            "text_sha256": record.content.sha256 if record.content else "",
            "encoding": parts.encoding,
            "segment_count": parts.segments,
            "details": json.dumps(dict(details or {}), sort_keys=True),
            "submitted_at": now,
            "updated_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "idempotency_key": idempotency_key,
            "request_sha256": request_sha256,
        }

        earlier = self._accepts.submit((row, record))
        if earlier is not None:
            if earlier.request_sha256 != request_sha256:
                raise Conflict(
                    "this Idempotency-Key was used for a different SMS; use a new key per SMS"
                )
            return Accepted(earlier, True)
        if self.on_accept is not None:
            self.on_accept()
        return Accepted(row_sms(row), False)

    def send(
        self,
        tenant_id: str,
        to: str,
        text: str,
        details: Mapping[str, str] | None = None,
        *,
        access_secret: bool = False,
    ) -> str:
        """The ``SmsSender`` port other domains use (notices, codes): accept and return the id;
        an invalid number raises :class:`InvalidPhoneNumber` (an ``InvalidInput``).
        ``access_secret``: the text holds a code or link the tenant must never read."""
        return self.accept(
            tenant_id=tenant_id, to=to, text=text, details=details, access_secret=access_secret
        ).sms.id

    # -- sending ----------------------------------------------------------------------------

    def outbound(self, sms: Sms) -> OutboundSms:
        return OutboundSms(
            sms_id=sms.id,
            sender=sms.sender,
            to=sms.recipient,
            text=sms.text,
            encoding="gsm7" if sms.encoding == "gsm7" else "ucs2",
            segments=split(sms.text).parts,
        )

    def submitted(self, sms: Sms, result: Submitted) -> SendOutcome:
        now = self.clock()
        record = self._record(
            sms,
            "RelayToNonERDS",
            now,
            details={
                "provider": result.provider,
                "attempt": sms.attempts,
                "segments": [
                    {"number": i + 1, "operator_message_id": m}
                    for i, m in enumerate(result.message_ids)
                ],
                **({"operator": dict(result.details)} if result.details else {}),
            },
        )
        return SendOutcome(
            sms.id,
            "submitted",
            now,
            records=[record],
            provider=result.provider,
            message_ids=list(result.message_ids),
            confirm_by=now + timedelta(seconds=self.settings.unconfirmed_after_seconds),
        )

    def refused(self, sms: Sms, provider: str, exc: PermanentFailure) -> SendOutcome:
        now = self.clock()
        reason = Reason(exc.status or "refused", exc.reason)
        record = self._record(
            sms,
            "RelayToNonERDSFailure",
            now,
            reasons=(reason,),
            details={"provider": provider, "attempt": sms.attempts, "status": FAILED},
        )
        return SendOutcome(sms.id, FAILED, now, records=[record], error=exc.reason)

    def deferred(self, sms: Sms, exc: TemporaryFailure) -> SendOutcome:
        """No evidence for a retry (nothing happened to the message); the next try waits."""
        now = self.clock()
        backoff = self.settings.retry_initial_seconds * 2 ** max(sms.attempts - 1, 0)
        backoff = min(backoff, self.settings.retry_max_seconds) * random.uniform(0.9, 1.1)  # noqa: S311 - jitter
        if exc.retry_after is not None:
            backoff = max(backoff, exc.retry_after)
        error = f"{exc.status}: {exc.reason}" if exc.status else exc.reason
        return SendOutcome(
            sms.id, "retry", now, next_attempt_at=now + timedelta(seconds=backoff), error=error
        )

    # -- receipts (the ReportSink) ----------------------------------------------------------

    def report(self, report: DeliveryReport) -> None:
        """Store the raw report durably and apply it (idempotent: a duplicate is a no-op)."""
        stored = StoredReport(
            sha256=hashlib.sha256(report.raw).hexdigest(),
            provider=report.provider,
            message_id=report.message_id,
            state=report.state,
            status=report.status,
            reported_at=report.at,
            raw=report.raw,
        )
        self._reports.submit((stored, self.clock()))

    def decide(self, sms: Sms, segments: list[Segment], report: StoredReport) -> Decision | None:
        """The message's evidence once its segments decide it (the worst of them)."""
        state = message_state([s.state for s in segments])
        facts = _segment_facts(segments)
        if state == UNDELIVERED:
            bad = [s for s in segments if s.state not in ("pending", "accepted", "delivered")]
            reasons = tuple(
                Reason(s.state, f"segment {s.number + 1}: {s.state} (operator error {s.status})")
                for s in bad
            )
            record = self._record(
                sms,
                "NonDelivery",
                report.reported_at,
                reasons=reasons,
                details={"provider": sms.provider, "status": UNDELIVERED, "segments": facts},
            )
            return Decision(UNDELIVERED, [record])
        if state == DELIVERED:
            last = max(s.reported_at for s in segments if s.reported_at is not None)
            record = self._record(
                sms,
                "DeliveryReported",
                last,
                details={
                    "provider": sms.provider,
                    "status": DELIVERED,
                    "meaning": "the operator reported delivery to the handset",
                    "segments": facts,
                },
            )
            return Decision(DELIVERED, [record])
        return None

    def tick(self) -> int:
        """The receipt clock's round: apply receipts that overtook their submission's commit,
        then mark overdue messages unconfirmed."""
        self.repo.apply_leftover_reports(self.decide, self.clock())
        return self.confirm_overdue()

    def confirm_overdue(self) -> int:
        """Messages still without a final receipt for every segment at their deadline become
        ``unconfirmed`` (DeliveryUnconfirmed): a missing receipt is never a delivery."""
        now = self.clock()
        done = 0
        for sms in self.repo.due_unconfirmed(now):
            segments = self.repo.segments(sms.id)
            waiting = [s.number + 1 for s in segments if s.state in ("pending", "accepted")]
            record = self._record(
                sms,
                "DeliveryUnconfirmed",
                now,
                reasons=(
                    Reason(
                        "no_receipt",
                        f"no final delivery receipt for segment(s) {waiting} within "
                        f"{self.settings.unconfirmed_after_seconds:g} s of submission",
                    ),
                ),
                details={
                    "provider": sms.provider,
                    "status": UNCONFIRMED,
                    "segments": _segment_facts(segments),
                },
            )
            done += self.repo.mark_final(sms, UNCONFIRMED, now, [record])
        return done

    # -- evidence ---------------------------------------------------------------------------

    def _record(
        self,
        sms: Sms,
        event: str,
        at: datetime,
        *,
        reasons: tuple[Reason, ...] = (),
        details: Mapping[str, Any],
    ) -> EvidenceRecord:
        return new_record(
            tenant_id=sms.tenant_id,
            event=event,
            subject=Subject("sms", sms.id),
            event_time=at,
            submission_time=sms.submitted_at,
            sender=Party(sms.sender),
            recipient=Party(sms.recipient),
            reasons=reasons,
            details={"channel": "sms", **details},
        )
