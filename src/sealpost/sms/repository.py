"""All SQL of certified SMS: messages, segments, delivery reports.

Every change of state writes its evidence records, and the events they imply, in the same
transaction (``outbox.append_evidence``).  Sending is *claimed* like email delivery: a lease
set in one statement, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (``BEGIN IMMEDIATE`` on
SQLite), and finishing is fenced on the lease owner, so two workers never both record a
submission.  Reports are stored by the SHA-256 of their raw bytes (a duplicate is a no-op)
and applied to a segment only while the segment has no final state (out of order is harmless).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update

from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import TimelineEntry, as_utc, as_utc_or_none, timeline
from sealpost.sms.model import (
    QUEUED,
    SEGMENT_ACCEPTED,
    SEGMENT_PENDING,
    SUBMITTED,
    Segment,
    Sms,
)
from sealpost.sms.tables import sms_certificates, sms_messages, sms_reports, sms_segments

_FIELDS = [f.name for f in fields(Sms)]
_COLUMNS = [sms_messages.c[name] for name in _FIELDS]
_TIMES = ("submitted_at", "updated_at", "relayed_at", "confirm_by", "final_at", "next_attempt_at")


def _sms(row: Any) -> Sms:
    values = {name: getattr(row, name) for name in _FIELDS}
    for key in _TIMES:
        values[key] = as_utc_or_none(values[key])
    values["details"] = json.loads(values["details"])
    return Sms(**values)


def _segment(row: Any) -> Segment:
    return Segment(
        number=row.number,
        state=row.state,
        provider=row.provider,
        message_id=row.message_id,
        status=row.status,
        reported_at=as_utc_or_none(row.reported_at),
        report_sha256=row.report_sha256,
        unanswered=row.unanswered,
    )


@dataclass(frozen=True)
class StoredReport:
    """A delivery report as stored (``raw`` exactly as received)."""

    sha256: str
    provider: str
    message_id: str
    state: str
    status: str
    reported_at: datetime
    raw: bytes


@dataclass(frozen=True)
class Decision:
    """What the service decided for a message from its segments: new status and evidence."""

    status: str
    records: Sequence[EvidenceRecord]


Decide = Callable[[Sms, list[Segment], StoredReport], Decision | None]


@dataclass(frozen=True)
class SendOutcome:
    """How one claimed message's submission ended."""

    sms_id: str
    kind: str
    """``submitted``, ``retry`` or ``failed``."""
    at: datetime
    records: Sequence[EvidenceRecord] = ()
    provider: str | None = None
    message_ids: Sequence[str] = ()
    confirm_by: datetime | None = None
    next_attempt_at: datetime | None = None
    error: str | None = None
    taken: Mapping[int, str] = field(default_factory=dict)
    """Segments the operator took in this attempt though the message is not submitted (a
    retry or a refusal after some were taken): recorded so they are never sent again."""
    unanswered: Sequence[int] = ()
    """Segments sent in this attempt without an answer (counted on the segment)."""


@dataclass(frozen=True)
class StoredSmsCertificate:
    """One issued version of an SMS's certificate (the PDF is in the blob store)."""

    sms_id: str
    version: int
    sha256: str
    size: int
    created_at: datetime
    record_id: str
    """The CertificateIssued record that recorded this version."""
    reason: str


class SmsRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- acceptance -------------------------------------------------------------------------

    @staticmethod
    def insert_many_in(
        conn: Connection, items: Sequence[tuple[dict[str, Any], EvidenceRecord]]
    ) -> list[Sms | None]:
        """Store new messages, their segments and their SubmissionAcceptance records, one
        statement per table; each item's result is the earlier message its idempotency key
        names (nothing stored for it), or None."""
        results: list[Sms | None] = []
        fresh: list[tuple[dict[str, Any], EvidenceRecord]] = []
        keyed: dict[tuple[str, str], dict[str, Any]] = {}
        for row, record in items:
            key = row.get("idempotency_key")
            if key is not None:
                same = keyed.get((row["tenant_id"], key))
                earlier = (
                    row_sms(same)
                    if same is not None
                    else conn.execute(
                        select(*_COLUMNS).where(
                            sms_messages.c.tenant_id == row["tenant_id"],
                            sms_messages.c.idempotency_key == key,
                        )
                    ).first()
                )
                if earlier is not None:
                    results.append(earlier if isinstance(earlier, Sms) else _sms(earlier))
                    continue
                keyed[(row["tenant_id"], key)] = row
            fresh.append((row, record))
            results.append(None)
        if fresh:
            conn.execute(insert(sms_messages), [row for row, _ in fresh])
            conn.execute(
                insert(sms_segments),
                [
                    {"sms_id": row["id"], "number": i, "state": SEGMENT_PENDING}
                    for row, _ in fresh
                    for i in range(row["segment_count"])
                ],
            )
            append_evidence(conn, [record for _, record in fresh])
        return results

    # -- reading ----------------------------------------------------------------------------

    def get(self, sms_id: str, tenant_id: str | None = None) -> Sms | None:
        query = select(*_COLUMNS).where(sms_messages.c.id == sms_id)
        if tenant_id is not None:
            query = query.where(sms_messages.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _sms(row)

    def segments(self, sms_id: str) -> list[Segment]:
        with self.engine.connect() as conn:
            return _segments_in(conn, sms_id)

    def timeline(self, tenant_id: str, sms_id: str) -> list[TimelineEntry]:
        return timeline(self.engine, tenant_id, "sms", sms_id)

    def reports(self, provider: str, message_id: str) -> list[StoredReport]:
        r = sms_reports.c
        query = select(sms_reports).where(r.provider == provider, r.message_id == message_id)
        with self.engine.connect() as conn:
            return [_report(row) for row in conn.execute(query.order_by(r.received_at))]

    # -- sending ----------------------------------------------------------------------------

    def claim_due(
        self, owner: str, *, limit: int, lease_seconds: float, now: datetime
    ) -> list[Sms]:
        """Reserve up to ``limit`` queued messages whose time has come (attempts counted)."""
        c = sms_messages.c
        due = (
            select(c.id)
            .where(c.status == QUEUED, c.next_attempt_at <= now)
            .where(or_(c.lease_until.is_(None), c.lease_until < now))
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        with write_transaction(self.engine) as conn:  # one statement: UPDATE ... RETURNING
            if not is_sqlite(conn):
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(
                update(sms_messages)
                .where(c.id.in_(due))
                .values(
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=c.attempts + 1,
                )
                .returning(*_COLUMNS)
            ).all()
        return sorted((_sms(r) for r in rows), key=lambda s: (s.next_attempt_at, s.id))

    def attempt_history(self, sms_ids: Sequence[str]) -> dict[str, list[Segment]]:
        """Per message, its segments an earlier attempt sent: taken (operator id known) or
        sent without an answer; one statement for the batch (empty for first attempts)."""
        if not sms_ids:
            return {}
        s = sms_segments.c
        query = (
            select(sms_segments)
            .where(s.sms_id.in_(list(sms_ids)))
            .where(or_(s.message_id.is_not(None), s.unanswered > 0))
            .order_by(s.sms_id, s.number)
        )
        found: dict[str, list[Segment]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.sms_id, []).append(_segment(row))
        return found

    def finish(self, owner: str, outcomes: Sequence[SendOutcome], decide: Decide) -> int:
        """Record how each claimed message's submission ended, in one transaction; returns how
        many were recorded (one whose lease was lost is skipped: its new owner decides).

        Every segment the operator took gets its operator id, whether the message is now
        submitted or still waits for its other segments (then they are never sent again),
        and reports that arrived before the ids were known (the operator can be that quick)
        are applied at once.
        """
        c = sms_messages.c
        done = 0
        records: list[EvidenceRecord] = []
        segments: list[dict[str, Any]] = []
        unanswered: list[dict[str, Any]] = []
        taken_ids: dict[str, list[str]] = {}
        at = max((o.at for o in outcomes), default=datetime.now(UTC))
        with write_transaction(self.engine) as conn:
            # One fence for the batch: the rows still leased to this owner, locked in id order
            # (as receipts lock them); then one UPDATE per kind of outcome (executemany).
            fence = (
                select(c.id)
                .where(c.id.in_([o.sms_id for o in outcomes]))
                .where(c.lease_owner == owner, c.status == QUEUED)
                .order_by(c.id)
            )
            owned = set(
                conn.execute(fence if is_sqlite(conn) else fence.with_for_update()).scalars()
            )
            kept = sorted((o for o in outcomes if o.sms_id in owned), key=lambda o: o.sms_id)
            released = {"lease_owner": None, "lease_until": None}
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for o in kept:
                row: dict[str, Any] = {"b_id": o.sms_id, "updated_at": o.at, "last_error": o.error}
                if o.kind == "submitted":
                    row.update(provider=o.provider, relayed_at=o.at, confirm_by=o.confirm_by)
                elif o.kind == "failed":
                    row.update(final_at=o.at)
                else:
                    row.update(next_attempt_at=o.next_attempt_at)
                by_kind.setdefault(o.kind, []).append(row)
            fixed: dict[str, dict[str, Any]] = {
                "submitted": {"status": SUBMITTED, "next_attempt_at": None},
                "failed": {"status": "failed", "next_attempt_at": None, "certificate_due": 1},
            }
            for kind, params in by_kind.items():
                conn.execute(
                    update(sms_messages)
                    .where(c.id == bindparam("b_id"))
                    .values(**released, **fixed.get(kind, {})),
                    params,
                )
            for o in kept:
                done += 1
                records.extend(o.records)
                ids = dict(enumerate(o.message_ids)) if o.kind == "submitted" else dict(o.taken)
                segments.extend(
                    {
                        "b_sms": o.sms_id,
                        "b_number": number,
                        "provider": o.provider,
                        "message_id": message_id,
                        "state": SEGMENT_ACCEPTED,
                    }
                    for number, message_id in ids.items()
                )
                unanswered.extend({"b_sms": o.sms_id, "b_number": n} for n in o.unanswered)
                taken_ids.setdefault(o.provider or "", []).extend(ids.values())
            s = sms_segments.c
            if segments:  # only segments not taken before: earlier ones keep their state
                conn.execute(
                    update(sms_segments)
                    .where(s.sms_id == bindparam("b_sms"), s.number == bindparam("b_number"))
                    .where(s.state == SEGMENT_PENDING),
                    segments,
                )
            if unanswered:
                conn.execute(
                    update(sms_segments)
                    .where(s.sms_id == bindparam("b_sms"), s.number == bindparam("b_number"))
                    .values(unanswered=s.unanswered + 1),
                    unanswered,
                )
            r = sms_reports.c
            early: list[tuple[StoredReport, datetime]] = []
            for provider, message_ids in taken_ids.items():  # receipts that overtook this commit
                if not message_ids:
                    continue
                rows = conn.execute(
                    select(sms_reports)
                    .where(r.provider == provider, r.message_id.in_(message_ids), r.applied == 0)
                    .order_by(r.received_at)
                ).all()
                early.extend((_report(row), at) for row in rows)
            if early:
                _apply_batch_in(conn, early, decide, records)
            append_evidence(conn, records)  # one statement per table for the whole batch
        return done

    # -- receipts ---------------------------------------------------------------------------

    @staticmethod
    def store_reports_in(
        conn: Connection, items: Sequence[tuple[StoredReport, datetime]], decide: Decide
    ) -> list[bool]:
        """Store raw reports (idempotent by their SHA-256) and apply them, with the evidence
        they decide appended once for the batch; per report, False for a duplicate.

        Lookups and inserts are one statement for the batch; then each report locks its
        message, in message order (two batches never wait on each other in a cycle)."""
        r = sms_reports.c
        shas = list({report.sha256 for report, _ in items})
        seen = set(conn.execute(select(r.sha256).where(r.sha256.in_(shas))).scalars())
        stored: list[bool] = []
        new: list[tuple[StoredReport, datetime]] = []
        for report, received_at in items:
            fresh = report.sha256 not in seen
            stored.append(fresh)
            if fresh:
                seen.add(report.sha256)
                new.append((report, received_at))
        if not new:
            return stored
        conn.execute(
            insert(sms_reports),
            [
                {
                    "sha256": report.sha256,
                    "provider": report.provider,
                    "message_id": report.message_id,
                    "state": report.state,
                    "status": report.status,
                    "reported_at": report.reported_at,
                    "received_at": received_at,
                    "raw": report.raw,
                    "applied": 0,
                }
                for report, received_at in new
            ],
        )
        records: list[EvidenceRecord] = []
        _apply_batch_in(conn, new, decide, records)
        append_evidence(conn, records)
        return stored

    def apply_leftover_reports(self, decide: Decide, now: datetime, limit: int = 500) -> int:
        """Apply reports stored while their segment's submission was not committed yet (a
        receipt can overtake the transaction that records the operator's ids)."""
        r, s = sms_reports.c, sms_segments.c
        query = (
            select(sms_reports)
            .join(sms_segments, and_(s.provider == r.provider, s.message_id == r.message_id))
            .where(r.applied == 0)
            .order_by(r.received_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            leftovers = [_report(row) for row in conn.execute(query)]
        if leftovers:
            with write_transaction(self.engine) as conn:
                records: list[EvidenceRecord] = []
                _apply_batch_in(conn, [(report, now) for report in leftovers], decide, records)
                append_evidence(conn, records)
        return len(leftovers)

    # -- the clock --------------------------------------------------------------------------

    def due_unconfirmed(self, now: datetime, limit: int = 500) -> list[Sms]:
        c = sms_messages.c
        query = select(*_COLUMNS).where(c.status == SUBMITTED, c.confirm_by <= now).limit(limit)
        with self.engine.connect() as conn:
            return [_sms(r) for r in conn.execute(query)]

    def due_expired(self, submitted_before: datetime, now: datetime, limit: int = 500) -> list[Sms]:
        """Queued messages accepted before ``submitted_before`` (their validity is over) that
        no sender holds right now."""
        c = sms_messages.c
        query = (
            select(*_COLUMNS)
            .where(c.status == QUEUED, c.submitted_at <= submitted_before)
            .where(or_(c.lease_until.is_(None), c.lease_until < now))
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_sms(r) for r in conn.execute(query)]

    def mark_expired(self, sms: Sms, at: datetime, records: Sequence[EvidenceRecord]) -> bool:
        """Queued -> failed (validity over); False if a sender claimed or finished it first."""
        c = sms_messages.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(sms_messages)
                .where(c.id == sms.id, c.status == QUEUED)
                .where(or_(c.lease_until.is_(None), c.lease_until < at))
                .values(
                    status="failed",
                    final_at=at,
                    updated_at=at,
                    next_attempt_at=None,
                    certificate_due=1,
                )
            ).rowcount
            if moved:
                append_evidence(conn, list(records))
        return bool(moved)

    def mark_final(
        self, sms: Sms, status: str, at: datetime, records: Sequence[EvidenceRecord]
    ) -> bool:
        """Move a submitted message to a final status; False if something else decided first."""
        c = sms_messages.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(sms_messages)
                .where(c.id == sms.id, c.status == SUBMITTED)
                .values(status=status, final_at=at, updated_at=at, certificate_due=1)
            ).rowcount
            if moved:
                append_evidence(conn, list(records))
        return bool(moved)


class SmsCertificateRepository:
    """The SQL of SMS certificates: which are due, the versions issued, storing a version."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def candidates(self, limit: int) -> list[Sms]:
        """Final messages due a certificate (the flag is set with the final status)."""
        c = sms_messages.c
        query = (
            select(*_COLUMNS)
            .where(c.certificate_due == 1, c.certificate_auto == 1)  # else: on request only
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_sms(r) for r in conn.execute(query)]

    def is_due(self, sms_id: str) -> bool:
        c = sms_messages.c
        query = select(c.certificate_due).where(c.id == sms_id)
        with self.engine.connect() as conn:
            return bool(conn.execute(query).scalar())

    def versions(self, sms_id: str) -> list[StoredSmsCertificate]:
        k = sms_certificates.c
        query = select(sms_certificates).where(k.sms_id == sms_id).order_by(k.version)
        with self.engine.connect() as conn:
            return [
                StoredSmsCertificate(
                    sms_id=r.sms_id,
                    version=r.version,
                    sha256=r.sha256,
                    size=r.size,
                    created_at=as_utc(r.created_at),
                    record_id=r.record_id,
                    reason=r.reason,
                )
                for r in conn.execute(query)
            ]

    def store(
        self, certificate: StoredSmsCertificate, record: EvidenceRecord, *, status: str
    ) -> bool:
        """Record a version and its CertificateIssued record, if the message is still as the
        certificate states it and no other version was stored meanwhile; clears the due flag.
        False (nothing written) otherwise."""
        c = sms_messages.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(sms_messages)
                .where(
                    c.id == certificate.sms_id,
                    c.certificate_version == certificate.version - 1,
                    c.status == status,
                )
                .values(certificate_version=certificate.version, certificate_due=0)
            ).rowcount
            if not moved:
                return False
            conn.execute(
                insert(sms_certificates).values(
                    id=record.id,
                    sms_id=certificate.sms_id,
                    version=certificate.version,
                    sha256=certificate.sha256,
                    size=certificate.size,
                    created_at=certificate.created_at,
                    record_id=certificate.record_id,
                    reason=certificate.reason,
                )
            )
            append_evidence(conn, [record])
        return True


def row_sms(row: dict[str, Any]) -> Sms:
    """A message as its row is about to be stored."""
    values: dict[str, Any] = {k: row.get(k) for k in _FIELDS}
    values["details"] = json.loads(row["details"])
    return Sms(**values)


def _report(row: Any) -> StoredReport:
    return StoredReport(
        sha256=row.sha256,
        provider=row.provider,
        message_id=row.message_id,
        state=row.state,
        status=row.status,
        reported_at=as_utc(row.reported_at),
        raw=bytes(row.raw),
    )


def _segments_in(conn: Connection, sms_id: str) -> list[Segment]:
    s = sms_segments.c
    rows = conn.execute(select(sms_segments).where(s.sms_id == sms_id).order_by(s.number))
    return [_segment(r) for r in rows]


def _apply_batch_in(
    conn: Connection,
    new: Sequence[tuple[StoredReport, datetime]],
    decide: Decide,
    records: list[EvidenceRecord],
) -> None:
    """Apply stored reports whose segments are known, set-wise: a handful of statements for
    the whole batch whatever its size (PostgreSQL pays a round trip per statement).

    1. one lookup of the segments the reports name, and one ``applied`` update;
    2. the messages with a final report are locked in one statement, in id order (``FOR
       UPDATE`` on PostgreSQL; SQLite's write transactions are serial): every writer of a
       message's segments holds that lock, and two batches never wait on each other in a
       cycle;
    3. their segments are read in one statement and the reports applied in memory, per
       message in arrival order, exactly as one at a time would: a segment takes only its
       first final report, and the message is decided (``decide``) by the first report that
       decides it, the later ones still recorded on their segments;
    4. the changed segments and the decided messages are written with one statement each
       (executemany), the decisions' records appended by the caller with the batch's.
    """
    r, s, m = sms_reports.c, sms_segments.c, sms_messages.c
    known: dict[tuple[str, str], tuple[str, int]] = {}
    for provider in {report.provider for report, _ in new}:
        ids = list({report.message_id for report, _ in new if report.provider == provider})
        for row in conn.execute(
            select(s.sms_id, s.number, s.message_id).where(
                s.provider == provider, s.message_id.in_(ids)
            )
        ):
            known[(provider, row.message_id)] = (row.sms_id, row.number)
    found = [
        (known[(report.provider, report.message_id)], report, received_at)
        for report, received_at in new
        if (report.provider, report.message_id) in known
    ]
    if not found:
        return  # the submissions are not recorded yet: applied when they are
    conn.execute(
        update(sms_reports)
        .where(r.sha256.in_([report.sha256 for _, report, _ in found]))
        .values(applied=1)
    )
    finals = [f for f in found if f[1].state not in ("accepted", "enroute")]
    if not finals:
        return  # intermediate states decide nothing
    sms_ids = sorted({sms_id for (sms_id, _), _, _ in finals})
    lock = select(*_COLUMNS).where(m.id.in_(sms_ids)).order_by(m.id)
    messages = {
        row.id: _sms(row)
        for row in conn.execute(lock if is_sqlite(conn) else lock.with_for_update())
    }
    segments: dict[str, dict[int, Segment]] = {}
    for row in conn.execute(
        select(sms_segments).where(s.sms_id.in_(sms_ids)).order_by(s.sms_id, s.number)
    ):
        segments.setdefault(row.sms_id, {})[row.number] = _segment(row)
    changed: dict[tuple[str, int], Segment] = {}
    decided: list[dict[str, Any]] = []
    open_ = {sms_id for sms_id, sms in messages.items() if sms.status == SUBMITTED}
    for (sms_id, number), report, received_at in sorted(finals, key=lambda f: f[0][0]):
        current = segments.get(sms_id, {}).get(number)
        if sms_id not in messages or current is None:
            continue
        if current.state not in (SEGMENT_PENDING, SEGMENT_ACCEPTED):
            continue  # the segment had its final receipt: out of order or repeated
        updated = replace(
            current,
            state=report.state,
            status=report.status,
            reported_at=report.reported_at,
            report_sha256=report.sha256,
        )
        segments[sms_id][number] = changed[(sms_id, number)] = updated
        if sms_id not in open_:
            continue  # decided already (or not submitted): the segment is still recorded
        sms = messages[sms_id]
        decision = decide(sms, list(segments[sms_id].values()), report)
        if decision is None:
            continue
        open_.discard(sms_id)
        decided.append(
            {
                "b_id": sms_id,
                "status": decision.status,
                "final_at": report.reported_at,
                "updated_at": received_at,
                "certificate_due": 1,
            }
        )
        records.extend(decision.records)  # appended with the rest of the batch, in this order
    if changed:
        conn.execute(
            update(sms_segments)
            .where(s.sms_id == bindparam("b_sms"), s.number == bindparam("b_number"))
            .where(or_(s.state == SEGMENT_PENDING, s.state == SEGMENT_ACCEPTED)),  # no IN:
            # executemany cannot expand one
            [
                {
                    "b_sms": sms_id,
                    "b_number": number,
                    "state": seg.state,
                    "status": seg.status,
                    "reported_at": seg.reported_at,
                    "report_sha256": seg.report_sha256,
                }
                for (sms_id, number), seg in sorted(changed.items())
            ],
        )
    if decided:
        conn.execute(
            update(sms_messages).where(m.id == bindparam("b_id"), m.status == SUBMITTED),
            decided,
        )
