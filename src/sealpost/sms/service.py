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
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from sealpost import metrics
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
from sealpost.logging import get_logger
from sealpost.phones import checked_number as checked_number
from sealpost.sms.batching import GroupCommit
from sealpost.sms.model import (
    DELIVERED,
    EXPIRED_IN_QUEUE,
    FAILED,
    QUEUED,
    UNCONFIRMED,
    UNDELIVERED,
    NumberOptedOut,
    Segment,
    Sms,
    Split,
    message_state,
    reference_of,
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

log = get_logger(__name__)

Clock = Callable[[], datetime]
Guard = Callable[[Connection, str], None]
_Accept = tuple[dict[str, Any], EvidenceRecord, Guard | None]


def _insert_guarded(
    repo: SmsRepository,
) -> Callable[[Connection, list[_Accept]], list[Sms | None]]:
    """The accept writer's batch: each item's guard, then every row in one statement per
    table.  A guard that raises fails the batch, which the writer retries item by item."""

    def apply(conn: Connection, items: list[_Accept]) -> list[Sms | None]:
        for row, _, guard in items:
            if guard is not None:
                guard(conn, row["id"])
        return repo.insert_many_in(conn, [(row, record) for row, record, _ in items])

    return apply


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SmsSettings:
    """What the service needs of the settings."""

    default_sender: str
    unconfirmed_after_seconds: float
    retry_initial_seconds: float
    retry_max_seconds: float
    validity_seconds: float = 86400.0
    """How long a message may wait for the operator to take it: past it, it is failed
    (``expired_in_queue``) and never sent; also passed as SMPP ``validity_period``."""


@dataclass(frozen=True)
class Accepted:
    sms: Sms
    replayed: bool


COMMITMENT = "sha256(nonce ‖ 0x00 ‖ text)"
"""``details.digest`` of an access-secret SMS: what its content SHA-256 is the digest of."""


def text_commitment(nonce_hex: str, text: str) -> str:
    """SHA-256 of the nonce's 16 bytes, a zero byte and the text in UTF-8.

    A code SMS is a fixed template around six digits: its plain SHA-256 gives the code back
    in a million tries, so the tenant (who sees every digest) could identify as the signer.
    With 128 random bits inside, only the operator, who keeps the nonce with the text, can
    open the commitment; a verifier recomputes it from the nonce and text the operator
    reveals."""
    return hashlib.sha256(bytes.fromhex(nonce_hex) + b"\x00" + text.encode()).hexdigest()


def _text_content(text: str, parts: tuple[str, ...], nonce: str | None = None) -> ContentInfo:
    """The text's UTF-8 digest (or its commitment under ``nonce``), and each segment's, as the
    record's content (UserContentInfo)."""
    data = text.encode()
    return ContentInfo(
        hashlib.sha256(data).hexdigest() if nonce is None else text_commitment(nonce, text),
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
        opted_out: Callable[[str, str], bool] | None = None,
    ):
        self.opted_out = opted_out
        """Whether (tenant, E.164 number) opted out (``sms.replies``); None: nobody did."""
        self.repo = repo
        self.settings = settings
        self.clock = clock
        self.on_accept = on_accept
        """Called after an SMS is committed (wakes the sender at once)."""
        self._accepts: GroupCommit[_Accept, Sms | None] = GroupCommit(
            repo.engine, _insert_guarded(repo), "sms-accept"
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
        respect_opt_out: bool = False,
        guard_in: Guard | None = None,
        certificate: bool = True,
    ) -> Accepted:
        """Store the message and its SubmissionAcceptance in one transaction (then 201).

        ``access_secret``: the text carries a one-time code or a single-use link (another
        domain's ``SmsSender`` port says so).  The record states ``access_secret: true``, no
        per-segment digests, and ``digest: "sha256(nonce ‖ 0x00 ‖ text)"``: the sealed content
        SHA-256 is a salted commitment (:func:`text_commitment`) with a random 128-bit nonce
        kept only in the SMS row, so the tenant cannot find the code from it; the API and the
        certificate never show the text or the nonce (``sealpost.certificates.secrets``).

        ``respect_opt_out``: refuse (:class:`NumberOptedOut`, 409) a number that answered
        STOP to one of the tenant's SMS; off by default (a certified notice the law requires
        is no marketing, and goes out whatever the number answered before).

        ``guard_in``: another domain's check, run by the writer in the commit transaction
        before this message's rows, with its SMS id; raising withdraws this message alone
        (the batch is retried item by item, as for any failing item), and whatever it writes
        commits with the message (reminder sequences: the stop check and the send are one
        transaction, issue 14).  ``certificate=False``: the certificate loop skips it; its
        certificate is issued only when asked for (a sequence's plain ``sms`` step)."""
        number = checked_number(to)
        if respect_opt_out and self.opted_out is not None and self.opted_out(tenant_id, number):
            raise NumberOptedOut(number)
        parts = split(text)
        nonce = secrets.token_hex(16) if access_secret else None
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
            content=_text_content(text, () if access_secret else parts.parts, nonce),
            details={
                "channel": "sms",
                **({ACCESS_SECRET: True, "digest": COMMITMENT} if access_secret else {}),
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
            "text_nonce": nonce,
            "encoding": parts.encoding,
            "segment_count": parts.segments,
            "details": json.dumps(dict(details or {}), sort_keys=True),
            "submitted_at": now,
            "updated_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "idempotency_key": idempotency_key,
            "request_sha256": request_sha256,
            "certificate_auto": 1 if certificate else 0,
        }

        earlier = self._accepts.submit((row, record, guard_in))
        if earlier is not None:
            if earlier.request_sha256 != request_sha256:
                raise Conflict(
                    "this Idempotency-Key was used for a different SMS; use a new key per SMS"
                )
            return Accepted(earlier, True)
        metrics.ACCEPTED.labels("sms").inc()
        log.info("submission.accepted", communication_id=sms_id, tenant_id=tenant_id, channel="sms")
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
        respect_opt_out: bool = False,
        guard_in: Guard | None = None,
        certificate: bool = True,
    ) -> str:
        """The ``SmsSender`` port other domains use (notices, codes): accept and return the id;
        an invalid number raises :class:`InvalidPhoneNumber` (an ``InvalidInput``).
        ``access_secret``: the text holds a code or link the tenant must never read."""
        return self.accept(
            tenant_id=tenant_id,
            to=to,
            text=text,
            details=details,
            access_secret=access_secret,
            respect_opt_out=respect_opt_out,
            guard_in=guard_in,
            certificate=certificate,
        ).sms.id

    # -- sending ----------------------------------------------------------------------------

    def valid_until(self, sms: Sms) -> datetime:
        return sms.submitted_at + timedelta(seconds=self.settings.validity_seconds)

    def outbound(self, sms: Sms, earlier: Sequence[Segment] = ()) -> OutboundSms:
        """What the adapter sends: the message's own concatenation reference (the same on
        every attempt) and the segments an earlier attempt had taken, not to be sent again."""
        return OutboundSms(
            sms_id=sms.id,
            sender=sms.sender,
            to=sms.recipient,
            text=sms.text,
            encoding="gsm7" if sms.encoding == "gsm7" else "ucs2",
            segments=split(sms.text).parts,
            reference=reference_of(sms.id),
            taken={s.number: s.message_id for s in earlier if s.message_id is not None},
            valid_until=self.valid_until(sms),
        )

    def submitted(
        self, sms: Sms, result: Submitted, earlier: Sequence[Segment] = ()
    ) -> SendOutcome:
        """RelayToNonERDS: every segment's operator id, which were taken on an earlier attempt
        and, honestly, which went out without an answer before (the operator may have those
        twice: SMPP 3.4 has no idempotency key)."""
        now = self.clock()
        before = {s.number for s in earlier if s.message_id is not None}
        unanswered = sorted({s.number for s in earlier if s.unanswered} | set(result.unanswered))
        segments: list[dict[str, Any]] = [
            {
                "number": i + 1,
                "operator_message_id": m,
                **({"taken_on_earlier_attempt": True} if i in before else {}),
            }
            for i, m in enumerate(result.message_ids)
        ]
        record = self._record(
            sms,
            "RelayToNonERDS",
            now,
            details={
                "provider": result.provider,
                "attempt": sms.attempts,
                "segments": segments,
                **({"operator": dict(result.details)} if result.details else {}),
                **(
                    {
                        "sent_without_answer": [n + 1 for n in unanswered],
                        "at_least_once": "these segments were sent at least once without "
                        "the operator's answer (the link dropped or timed out) and sent again; "
                        "the operator may have taken them twice (SMPP 3.4 has no idempotency "
                        "key); the ids above are the ones the operator gave",
                    }
                    if unanswered
                    else {}
                ),
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
            unanswered=list(result.unanswered),
        )

    def refused(self, sms: Sms, provider: str, exc: PermanentFailure) -> SendOutcome:
        now = self.clock()
        reason = Reason(exc.status or "refused", exc.reason)
        taken = dict(exc.taken)
        record = self._record(
            sms,
            "RelayToNonERDSFailure",
            now,
            reasons=(reason,),
            details={
                "provider": provider,
                "attempt": sms.attempts,
                "status": FAILED,
                **(
                    {
                        "segments_taken": [
                            {"number": n + 1, "operator_message_id": m}
                            for n, m in sorted(taken.items())
                        ]
                    }
                    if taken
                    else {}
                ),
            },
        )
        return SendOutcome(
            sms.id, FAILED, now, records=[record], error=exc.reason, provider=provider, taken=taken
        )

    def deferred(self, sms: Sms, exc: TemporaryFailure, provider: str | None = None) -> SendOutcome:
        """No evidence for a retry (the message is still waiting); the segments the operator
        took are recorded (never sent again) and the next try waits."""
        now = self.clock()
        backoff = self.settings.retry_initial_seconds * 2 ** max(sms.attempts - 1, 0)
        backoff = min(backoff, self.settings.retry_max_seconds) * random.uniform(0.9, 1.1)  # noqa: S311 - jitter
        if exc.retry_after is not None:
            backoff = max(backoff, exc.retry_after)
        error = f"{exc.status}: {exc.reason}" if exc.status else exc.reason
        return SendOutcome(
            sms.id,
            "retry",
            now,
            next_attempt_at=now + timedelta(seconds=backoff),
            error=error,
            provider=provider,
            taken=dict(exc.taken),
            unanswered=list(exc.unanswered),
        )

    def expired(self, sms: Sms, segments: Sequence[Segment] = ()) -> SendOutcome:
        """The validity is over before the operator took (all of) it: never sent any more."""
        now = self.clock()
        record = self._expiry_record(sms, segments, now)
        return SendOutcome(sms.id, FAILED, now, records=[record], error=EXPIRED_IN_QUEUE)

    def _expiry_record(
        self, sms: Sms, segments: Sequence[Segment], now: datetime
    ) -> EvidenceRecord:
        """NonDelivery, reason ``expired_in_queue`` (and the operator's last answer, if any):
        the operator did not take it within the validity (e.g. unreachable for days)."""
        reasons = [
            Reason(
                EXPIRED_IN_QUEUE,
                f"not taken by the operator within {self.settings.validity_seconds:g} s of "
                f"acceptance ({sms.attempts} attempt(s))",
            )
        ]
        if sms.last_error:
            status, _, text = sms.last_error.partition(": ")
            reasons.append(Reason(status if text else "operator", sms.last_error))
        taken = [s for s in segments if s.message_id is not None]
        return self._record(
            sms,
            "NonDelivery",
            now,
            reasons=tuple(reasons),
            details={
                "provider": sms.provider,
                "status": FAILED,
                "valid_until": self.valid_until(sms).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **({"segments": _segment_facts(list(segments))} if taken else {}),
            },
        )

    def expire_overdue(self) -> int:
        """Queued messages past their validity become ``failed`` (NonDelivery,
        ``expired_in_queue``): an operator unreachable for days does not keep them forever."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.settings.validity_seconds)
        done = 0
        for sms in self.repo.due_expired(cutoff, now):
            record = self._expiry_record(sms, self.repo.segments(sms.id), now)
            done += self.repo.mark_expired(sms, now, [record])
        return done

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
        fail queued messages past their validity, then mark overdue messages unconfirmed."""
        self.repo.apply_leftover_reports(self.decide, self.clock())
        return self.expire_overdue() + self.confirm_overdue()

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
