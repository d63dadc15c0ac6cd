"""All SQL of certified email: communications, delivery attempts, evidence certificates.

Every state change writes its evidence records, and the events they imply, in the same
transaction (``outbox.append_evidence``), so a communication's status never disagrees with its
evidence and integrators hear of every change.  Delivery work is *claimed*: a lease
(owner, until) set in one statement, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so N workers
never take the same row, ``BEGIN IMMEDIATE`` on SQLite; finishing an attempt is fenced on the
lease owner, so a worker whose lease was taken over (it stalled, or was presumed dead) cannot
overwrite the newer outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select, text, tuple_, update

from sealpost.db.engine import is_sqlite, reading, write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import TimelineEntry, as_utc, timeline

__all__ = ["CommunicationRepository", "TimelineEntry"]
from sealpost.communications.tables import communications, delivery_attempts, evidence_certificates
from sealpost.ledger.tables import evidence_records

QUEUED, DELIVERED, RELAYED, FAILED = "queued", "delivered", "relayed", "failed"
PICKUP = "pickup"
"""Delivery by registered pickup: the content waits in Sealpost (never claimed for relay)."""
ACCEPTED, REJECTED, HANDED_OVER, UNCLAIMED = "accepted", "rejected", "handed_over", "unclaimed"
PICKUP_FINAL_STATUSES = (ACCEPTED, REJECTED, HANDED_OVER, UNCLAIMED)
STATUSES = (QUEUED, DELIVERED, RELAYED, FAILED, PICKUP, *PICKUP_FINAL_STATUSES)
FINAL_STATUSES = (DELIVERED, RELAYED, FAILED, *PICKUP_FINAL_STATUSES)


def _column_text(value: str) -> str:
    """Text from a remote party (an SMTP reply, a bounce's diagnostic) for a text column.

    PostgreSQL refuses NUL in text, so a NUL is written U+FFFD here; the evidence record keeps
    the exact text (canonical JSON escapes it as ``\\u0000``).
    """
    return value.replace("\0", "\ufffd")


@dataclass(frozen=True)
class Communication:
    """One message to one recipient, and where its delivery stands."""

    id: str
    tenant_id: str
    submission_id: str
    channel: str
    via: str
    status: str
    sender: str
    recipient: str
    subject: str | None
    message_id: str
    content_sha256: str
    content_size: int
    submitted_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    attempts: int
    last_reply: str | None
    warn_at: datetime
    expires_at: datetime
    delay_warned: int
    idempotency_key: str | None
    request_sha256: str | None
    certificate_version: int
    certificate_due: int
    tracked_sha256: str | None = None
    """The copy to transmit when open and click tracking rewrote its HTML part (its digest is
    in the SubmissionAcceptance's ``details.tracking``); None: :attr:`content_sha256`."""


_FIELDS = [f.name for f in fields(Communication)]
_COLUMNS = [communications.c[name] for name in _FIELDS]


def _communication(row: Any) -> Communication:
    values = {name: getattr(row, name) for name in _FIELDS}
    for key in ("submitted_at", "updated_at", "delivered_at", "next_attempt_at"):
        if values[key] is not None:
            values[key] = as_utc(values[key])
    values["warn_at"], values["expires_at"] = as_utc(row.warn_at), as_utc(row.expires_at)
    return Communication(**values)


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt ended with, and the state it leads to."""

    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str  # "delivered" | "relayed" | "deferred" | "failed"
    reply_code: int | None
    reply_text: str
    remote_host: str
    remote_ip: str | None
    details: dict[str, Any]
    status: str
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class StoredCertificate:
    communication_id: str
    version: int
    sha256: str
    size: int
    created_at: datetime
    record_id: str
    reason: str


class CommunicationRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- acceptance -------------------------------------------------------------------------

    @staticmethod
    def insert_in(
        conn: Connection, rows: Sequence[dict[str, Any]], records: Sequence[EvidenceRecord]
    ) -> None:
        if rows:
            conn.execute(insert(communications), list(rows))
        append_evidence(conn, records)

    @staticmethod
    def by_idempotency_key_in(conn: Connection, tenant_id: str, key: str) -> list[Communication]:
        query = (
            select(*_COLUMNS)
            .where(communications.c.tenant_id == tenant_id)
            .where(communications.c.idempotency_key == key)
            .order_by(communications.c.recipient)
        )
        return [_communication(r) for r in conn.execute(query)]

    def append_records(self, records: Sequence[EvidenceRecord]) -> None:
        with write_transaction(self.engine) as conn:
            append_evidence(conn, records)

    # -- reading ----------------------------------------------------------------------------

    def get(self, communication_id: str, tenant_id: str | None = None) -> Communication | None:
        query = select(*_COLUMNS).where(communications.c.id == communication_id)
        if tenant_id is not None:
            query = query.where(communications.c.tenant_id == tenant_id)
        with reading(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _communication(row)

    def find_by_message_id(self, message_id: str) -> list[Communication]:
        if "\0" in message_id:  # a hostile bounce's; no stored Message-ID holds one
            return []
        query = select(*_COLUMNS).where(communications.c.message_id == message_id)
        with self.engine.connect() as conn:
            return [_communication(r) for r in conn.execute(query)]

    def search(
        self,
        tenant_id: str,
        *,
        status: Sequence[str] = (),
        recipient: str | None = None,
        submitted_from: datetime | None = None,
        submitted_to: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Communication]:
        """Newest first; ``after`` is the (submitted_at, id) of the last row already seen."""
        c = communications.c
        query = select(*_COLUMNS).where(c.tenant_id == tenant_id)
        if status:
            query = query.where(c.status.in_(list(status)))
        if recipient:
            query = query.where(func.lower(c.recipient) == recipient.lower())
        if submitted_from:
            query = query.where(c.submitted_at >= submitted_from)
        if submitted_to:
            query = query.where(c.submitted_at < submitted_to)
        if after:
            # a row comparison, not ``submitted_at < X OR (submitted_at = X AND id < Y)``:
            # PostgreSQL turns it into an index bound, where the OR was a filter over every
            # newer row (a page 85 days back read ~1M index entries)
            query = query.where(tuple_(c.submitted_at, c.id) < tuple_(after[0], after[1]))
        query = query.order_by(c.submitted_at.desc(), c.id.desc()).limit(limit)
        with reading(self.engine) as conn:
            return [_communication(r) for r in conn.execute(query)]

    def timeline(self, tenant_id: str, communication_id: str) -> list[TimelineEntry]:
        return timeline(self.engine, tenant_id, "communication", communication_id)

    def attempts(self, communication_id: str) -> list[dict[str, Any]]:
        a = delivery_attempts.c
        query = select(delivery_attempts).where(a.communication_id == communication_id)
        with reading(self.engine) as conn:
            rows = conn.execute(query.order_by(a.number)).all()
        return [
            {
                "number": row.number,
                "started_at": as_utc(row.started_at),
                "finished_at": as_utc(row.finished_at),
                "outcome": row.outcome,
                "reply_code": row.reply_code,
                "reply": row.reply_text,
                "remote_host": row.remote_host,
                "remote_ip": row.remote_ip,
                "details": json.loads(row.details),
                "record_id": row.record_id,
            }
            for row in rows
        ]

    def count_by_status(self, tenant_id: str | None = None) -> dict[str, int]:
        query = select(communications.c.status, func.count()).group_by(communications.c.status)
        if tenant_id is not None:
            query = query.where(communications.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    # -- delivery ---------------------------------------------------------------------------

    def claim_due(
        self, owner: str, *, limit: int, lease_seconds: float, now: datetime | None = None
    ) -> list[Communication]:
        """Reserve up to ``limit`` due deliveries for ``owner`` (attempts counted here).

        A lease whose owner died is taken over once it expires; :meth:`release_dead_leases`
        frees those of processes known dead at once.
        """
        now = now or datetime.now(UTC)
        until = now + timedelta(seconds=lease_seconds)
        c = communications.c
        due = (
            select(c.id)
            .where(c.status == QUEUED, c.next_attempt_at <= now)
            .where(or_(c.lease_until.is_(None), c.lease_until < now))
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        with write_transaction(self.engine) as conn:
            if not is_sqlite(conn):
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                update(communications)
                .where(c.id.in_(ids))
                .values(lease_owner=owner, lease_until=until, attempts=c.attempts + 1)
            )
            rows = conn.execute(select(*_COLUMNS).where(c.id.in_(ids))).all()
        return sorted((_communication(r) for r in rows), key=lambda x: x.next_attempt_at or now)

    def release_dead_leases(self, owner_prefix: str, alive: Callable[[str], bool]) -> int:
        """Free leases held by owners starting with ``owner_prefix`` that are not ``alive``.

        Crash recovery on one host: the attempt a dead process counted did not finish, so it
        is retried at once instead of after the lease expires.
        """
        c = communications.c
        with write_transaction(self.engine) as conn:  # SQLite: a read-then-write needs IMMEDIATE
            owners = conn.execute(
                select(c.lease_owner)
                .where(c.status == QUEUED, c.lease_owner.startswith(owner_prefix, autoescape=True))
                .distinct()
            ).scalars()
            dead = [o for o in owners if o is not None and not alive(o)]
            if not dead:
                return 0
            return int(
                conn.execute(
                    update(communications)
                    .where(c.status == QUEUED, c.lease_owner.in_(dead))
                    .values(lease_owner=None, lease_until=None)
                ).rowcount
            )

    def release_leases(self, owner: str, unstarted: Collection[str] = ()) -> int:
        """Free every delivery ``owner`` still holds (a worker shutting down): another worker
        takes it at once instead of after the lease.  Those in ``unstarted`` (claimed, their
        recipient never tried) give back the attempt their claim counted: a restart does
        not use up the attempts of a message."""
        c = communications.c
        held = (c.status == QUEUED, c.lease_owner == owner)
        not_tried = list(unstarted)
        with write_transaction(self.engine) as conn:
            freed = 0
            if not_tried:
                freed += conn.execute(
                    update(communications)
                    .where(*held, c.id.in_(not_tried), c.attempts > 0)
                    .values(lease_owner=None, lease_until=None, attempts=c.attempts - 1)
                ).rowcount
            freed += conn.execute(
                update(communications).where(*held).values(lease_owner=None, lease_until=None)
            ).rowcount
            return int(freed)

    def finish_attempt(
        self,
        owner: str,
        communication: Communication,
        attempt: AttemptOutcome,
        records: Sequence[EvidenceRecord],
        *,
        attempt_record_id: str,
        attempt_id: str,
    ) -> bool:
        """Write the attempt, its evidence and the new state; False if the lease was lost."""
        c = communications.c
        values: dict[str, Any] = {
            "status": attempt.status,
            "updated_at": attempt.finished_at,
            "next_attempt_at": attempt.next_attempt_at,
            "last_reply": _column_text(attempt.reply_text),
            "lease_owner": None,
            "lease_until": None,
        }
        if attempt.status in (DELIVERED, RELAYED):
            values["delivered_at"] = attempt.finished_at
        if attempt.status in FINAL_STATUSES:
            values["certificate_due"] = 1
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(communications)
                .where(c.id == communication.id, c.lease_owner == owner, c.status == QUEUED)
                .values(**values)
            ).rowcount
            if not moved:
                return False
            conn.execute(
                insert(delivery_attempts).values(
                    id=attempt_id,
                    communication_id=communication.id,
                    number=attempt.number,
                    worker=owner,
                    started_at=attempt.started_at,
                    finished_at=attempt.finished_at,
                    outcome=attempt.outcome,
                    reply_code=attempt.reply_code,
                    reply_text=_column_text(attempt.reply_text),
                    remote_host=attempt.remote_host,
                    remote_ip=attempt.remote_ip,
                    details=json.dumps(attempt.details, sort_keys=True, default=str),
                    record_id=attempt_record_id,
                )
            )
            append_evidence(conn, records)
        return True

    def due_for_warning(self, now: datetime, limit: int = 500) -> list[Communication]:
        c = communications.c
        query = (
            select(*_COLUMNS)
            .where(c.status == QUEUED, c.delay_warned == 0, c.warn_at <= now)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_communication(r) for r in conn.execute(query)]

    def mark_warned(self, communication_id: str, records: Sequence[EvidenceRecord]) -> bool:
        c = communications.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(communications)
                .where(c.id == communication_id, c.delay_warned == 0, c.status == QUEUED)
                .values(delay_warned=1, updated_at=datetime.now(UTC))
            ).rowcount
            if moved:
                append_evidence(conn, records)
        return bool(moved)

    def due_for_expiry(self, now: datetime, limit: int = 500) -> list[Communication]:
        c = communications.c
        query = (
            select(*_COLUMNS)
            .where(c.status == QUEUED, c.expires_at <= now)
            .where(or_(c.lease_until.is_(None), c.lease_until < now))
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_communication(r) for r in conn.execute(query)]

    def mark_final(
        self,
        communication_id: str,
        status: str,
        reply: str,
        records: Sequence[EvidenceRecord],
        *,
        only_if_status: Sequence[str] | None = None,
    ) -> bool:
        """Move to a final status outside a delivery attempt (expiry, a later bounce).

        Never while a worker holds a live lease: its attempt's outcome (perhaps a 250) must
        not be overwritten; the caller tries again later.
        """
        c = communications.c
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            query = (
                update(communications)
                .where(c.id == communication_id)
                .where(or_(c.lease_until.is_(None), c.lease_until < now))
            )
            if only_if_status is not None:
                query = query.where(c.status.in_(list(only_if_status)))
            moved = conn.execute(
                query.values(
                    status=status,
                    updated_at=now,
                    last_reply=_column_text(reply),
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_until=None,
                    certificate_due=1,
                )
            ).rowcount
            if moved:
                append_evidence(conn, records)
        return bool(moved)

    # -- certificates -----------------------------------------------------------------------

    @staticmethod
    def finish_pickup_in(
        conn: Connection, communication_id: str, status: str, now: datetime
    ) -> bool:
        """A pickup ended (``status`` one of :data:`PICKUP_FINAL_STATUSES`): final, and its
        certificate due; only from ``pickup``, so it happens once."""
        c = communications.c
        return bool(
            conn.execute(
                update(communications)
                .where(c.id == communication_id, c.status == PICKUP)
                .values(status=status, updated_at=now, certificate_due=1)
            ).rowcount
        )

    @staticmethod
    def touch_in(conn: Connection, communication_id: str, now: datetime) -> None:
        """New evidence after a final pickup state: a new certificate version is due."""
        c = communications.c
        conn.execute(
            update(communications)
            .where(c.id == communication_id, c.status.in_(list(PICKUP_FINAL_STATUSES)))
            .values(updated_at=now, certificate_due=1)
        )

    @staticmethod
    def evidence_added_in(conn: Connection, communication_id: str, now: datetime) -> None:
        """Evidence added after a final status by another part (a deadline's records): a new
        certificate version is due, whatever the delivery mode."""
        c = communications.c
        conn.execute(
            update(communications)
            .where(c.id == communication_id, c.status.in_(list(FINAL_STATUSES)))
            .values(updated_at=now, certificate_due=1)
        )

    def certificate_candidates(self, limit: int = 20) -> list[Communication]:
        c = communications.c
        query = (
            select(*_COLUMNS)
            .where(c.certificate_due == 1, c.status.in_(list(FINAL_STATUSES)))
            .where(c.certificate_auto == 1)  # the others: on request only
            .order_by(c.updated_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_communication(r) for r in conn.execute(query)]

    def queue_depth(self, cap: int) -> int:
        """Communications queued for delivery (due now or waiting to retry), counted up to
        ``cap`` (``/metrics`` at every scrape: ``ix_communications_due``, bounded)."""
        c = communications.c
        queued = select(c.id).where(c.status == QUEUED).limit(cap).subquery()
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(queued)).scalar_one())

    def certificate_backlog(self, cap: int) -> tuple[int, datetime | None]:
        """How many communications in a final state wait for their (automatic) certificate,
        up to ``cap``, and since when the oldest waits (its last change); the partial
        index ``ix_communications_certificate_due`` keeps it cheap at every scrape."""
        c = communications.c
        waiting = (
            select(c.updated_at)
            .where(c.certificate_due == 1, c.status.in_(list(FINAL_STATUSES)))
            .where(c.certificate_auto == 1)
        )
        with self.engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(waiting.limit(cap).subquery())
            ).scalar_one()
            oldest = conn.execute(waiting.order_by(c.updated_at).limit(1)).scalar_one_or_none()
        return int(count), None if oldest is None else as_utc(oldest)

    def event_count(self, tenant_id: str, communication_id: str) -> int:
        r = evidence_records.c
        query = select(func.count()).where(
            r.tenant_id == tenant_id,
            r.subject_type == "communication",
            r.subject_id == communication_id,
            r.event != "CertificateIssued",
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def store_certificate(
        self,
        certificate: StoredCertificate,
        record: EvidenceRecord,
        *,
        events_covered: int,
        status: str,
        updated_at: datetime,
    ) -> bool:
        """Record a new version, if the communication is still as the certificate states it.

        False (nothing written) when the status changed meanwhile: the caller issues again.
        The due flag is cleared only if no event arrived meanwhile.
        """
        c, r = communications.c, evidence_records.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(communications)
                .where(
                    c.id == certificate.communication_id,
                    c.certificate_version == certificate.version - 1,
                    c.status == status,
                    c.updated_at == updated_at,
                )
                .values(certificate_version=certificate.version)
            ).rowcount
            if not moved:
                return False
            conn.execute(
                insert(evidence_certificates).values(
                    id=record.id,
                    communication_id=certificate.communication_id,
                    version=certificate.version,
                    sha256=certificate.sha256,
                    size=certificate.size,
                    created_at=certificate.created_at,
                    record_id=certificate.record_id,
                    reason=certificate.reason,
                )
            )
            append_evidence(conn, [record])
            now_count = conn.execute(
                select(func.count()).where(
                    r.tenant_id == record.tenant_id,
                    r.subject_type == "communication",
                    r.subject_id == certificate.communication_id,
                    r.event != "CertificateIssued",
                )
            ).scalar_one()
            if now_count == events_covered:
                conn.execute(
                    update(communications)
                    .where(c.id == certificate.communication_id)
                    .values(certificate_due=0)
                )
        return True

    def certificates(self, communication_id: str) -> list[StoredCertificate]:
        e = evidence_certificates.c
        query = select(evidence_certificates).where(e.communication_id == communication_id)
        with reading(self.engine) as conn:
            rows = conn.execute(query.order_by(e.version)).all()
        return [_stored_certificate(row) for row in rows]

    def certificate_by_sha256(self, sha256: str) -> StoredCertificate | None:
        query = select(evidence_certificates).where(evidence_certificates.c.sha256 == sha256)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored_certificate(row)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def _stored_certificate(row: Any) -> StoredCertificate:
    return StoredCertificate(
        communication_id=row.communication_id,
        version=row.version,
        sha256=row.sha256,
        size=row.size,
        created_at=as_utc(row.created_at),
        record_id=row.record_id,
        reason=row.reason,
    )
