"""All SQL of signature processes: processes, documents and their revisions, signers.
(Links, page sessions and codes are the access kit's: ``sealpost.access``.)

Like communications, every state change writes its evidence records (and so its events) in
the same transaction (``outbox.append_evidence``).  Changes that race (two parallel signers,
a signer and the expiry job, two workers) are compare-and-set on the state they start from:
the loser sees ``False`` and re-reads, nothing is applied twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from sealpost.db.engine import reading, write_transaction
from sealpost.errors import Conflict
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import TimelineEntry, as_utc, as_utc_or_none, timeline
from sealpost.signatures.tables import (
    signature_documents,
    signature_processes,
    signature_revisions,
    signature_signers,
    tenant_signing_settings,
)

# process statuses
IN_PROGRESS, COMPLETED, DECLINED, EXPIRED, CANCELLED = (
    "in_progress",
    "completed",
    "declined",
    "expired",
    "cancelled",
)
PROCESS_STATUSES = (IN_PROGRESS, COMPLETED, DECLINED, EXPIRED, CANCELLED)
# signer statuses
WAITING, NOTIFIED, IDENTIFIED, PENDING, SIGNED, DECLINED_BY, LOCKED, DONE = (
    "waiting",  # not their turn yet (sequential)
    "notified",  # invited, not identified
    "identified",  # passed the OTP (or needs none)
    "pending",  # signed, waiting for the TSA to apply it
    "signed",  # signed or approved
    "declined",
    "locked",  # code attempts exhausted (the access kit counts them)
    "done",  # a viewer who acknowledged, a cc who got the result
)
ROLES = ("signer", "approver", "viewer", "cc")
SIGNING_ROLES = ("signer", "approver")


@dataclass(frozen=True)
class Document:
    id: str
    process_id: str
    number: int
    name: str
    page_sizes: list[tuple[float, float]]
    original_sha256: str
    current_sha256: str


@dataclass(frozen=True)
class Revision:
    document_id: str
    number: int
    kind: str
    signer_id: str | None
    sha256_before: str
    sha256_after: str
    created_at: datetime


@dataclass(frozen=True)
class Signer:
    id: str
    process_id: str
    number: int
    name: str
    email: str | None
    phone: str | None
    role: str
    sign_order: int
    identification: str
    fields: list[dict[str, Any]]
    status: str
    notified_at: datetime | None
    next_reminder_at: datetime | None
    reminders_sent: int
    identified_at: datetime | None
    viewed_at: datetime | None
    signed_at: datetime | None
    pending_signature: dict[str, Any] | None


@dataclass(frozen=True)
class SignatureProcess:
    id: str
    tenant_id: str
    title: str
    message: str
    status: str
    signing_order: str
    consent_text: str
    consent_sha256: str
    reminder_hours: list[float]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_reason: str | None
    finalize_due: bool
    audit_sha256: str | None
    documents: list[Document]
    signers: list[Signer]

    def signer(self, signer_id: str) -> Signer | None:
        return next((s for s in self.signers if s.id == signer_id), None)


def _process(row: Any, documents: list[Document], signers: list[Signer]) -> SignatureProcess:
    return SignatureProcess(
        id=row.id,
        tenant_id=row.tenant_id,
        title=row.title,
        message=row.message,
        status=row.status,
        signing_order=row.signing_order,
        consent_text=row.consent_text,
        consent_sha256=row.consent_sha256,
        reminder_hours=json.loads(row.reminder_hours),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        expires_at=as_utc(row.expires_at),
        ended_at=as_utc_or_none(row.ended_at),
        ended_reason=row.ended_reason,
        finalize_due=bool(row.finalize_due),
        audit_sha256=row.audit_sha256,
        documents=documents,
        signers=signers,
    )


def _document(row: Any) -> Document:
    return Document(
        id=row.id,
        process_id=row.process_id,
        number=row.number,
        name=row.name,
        page_sizes=[tuple(p) for p in json.loads(row.page_sizes)],
        original_sha256=row.original_sha256,
        current_sha256=row.current_sha256,
    )


def _signer(row: Any) -> Signer:
    return Signer(
        id=row.id,
        process_id=row.process_id,
        number=row.number,
        name=row.name,
        email=row.email,
        phone=row.phone,
        role=row.role,
        sign_order=row.sign_order,
        identification=row.identification,
        fields=json.loads(row.fields),
        status=row.status,
        notified_at=as_utc_or_none(row.notified_at),
        next_reminder_at=as_utc_or_none(row.next_reminder_at),
        reminders_sent=row.reminders_sent,
        identified_at=as_utc_or_none(row.identified_at),
        viewed_at=as_utc_or_none(row.viewed_at),
        signed_at=as_utc_or_none(row.signed_at),
        pending_signature=json.loads(row.pending_signature) if row.pending_signature else None,
    )


class SignatureRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    # -- creation ------------------------------------------------------------------------------

    def create_in(
        self,
        conn: Connection,
        process: Mapping[str, Any],
        documents: Sequence[Mapping[str, Any]],
        signers: Sequence[Mapping[str, Any]],
        revisions: Sequence[Mapping[str, Any]],
        records: Sequence[EvidenceRecord],
    ) -> None:
        try:
            conn.execute(insert(signature_processes).values(**process))
        except IntegrityError:
            raise Conflict("a signature process with this Idempotency-Key exists") from None
        conn.execute(insert(signature_documents), [dict(d) for d in documents])
        conn.execute(insert(signature_signers), [dict(s) for s in signers])
        if revisions:  # none when no signer has a visible field: an empty executemany fails
            conn.execute(insert(signature_revisions), [dict(r) for r in revisions])
        append_evidence(conn, records)

    def by_idempotency_key(self, tenant_id: str, key: str) -> tuple[str, str | None] | None:
        p = signature_processes.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(p.id, p.request_sha256).where(
                    p.tenant_id == tenant_id, p.idempotency_key == key
                )
            ).first()
        return None if row is None else (row.id, row.request_sha256)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, process_id: str, tenant_id: str | None = None) -> SignatureProcess | None:
        with self.engine.connect() as conn:
            return self.get_in(conn, process_id, tenant_id)

    def get_in(
        self, conn: Connection, process_id: str, tenant_id: str | None = None
    ) -> SignatureProcess | None:
        p, d, s = signature_processes.c, signature_documents.c, signature_signers.c
        query = select(signature_processes).where(p.id == process_id)
        if tenant_id is not None:
            query = query.where(p.tenant_id == tenant_id)
        row = conn.execute(query).first()
        if row is None:
            return None
        documents = [
            _document(r)
            for r in conn.execute(
                select(signature_documents).where(d.process_id == process_id).order_by(d.number)
            )
        ]
        signers = [
            _signer(r)
            for r in conn.execute(
                select(signature_signers).where(s.process_id == process_id).order_by(s.number)
            )
        ]
        return _process(row, documents, signers)

    def page(
        self,
        tenant_id: str,
        *,
        status: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[SignatureProcess]:
        """Newest first, keyset-paged on (created_at, id): three queries for the page (the
        processes, then all their documents, then all their signers), not three per process."""
        p, d, s = signature_processes.c, signature_documents.c, signature_signers.c
        query = select(signature_processes).where(p.tenant_id == tenant_id)
        if status is not None:
            query = query.where(p.status == status)
        if before is not None:  # a row comparison: an index bound, not a filter (as communications)
            query = query.where(tuple_(p.created_at, p.id) < tuple_(before[0], before[1]))
        query = query.order_by(p.created_at.desc(), p.id.desc()).limit(limit)
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
            ids = [row.id for row in rows]
            if not ids:
                return []
            documents: dict[str, list[Document]] = {i: [] for i in ids}
            for r in conn.execute(
                select(signature_documents)
                .where(d.process_id.in_(ids))
                .order_by(d.process_id, d.number)
            ):
                documents[r.process_id].append(_document(r))
            signers: dict[str, list[Signer]] = {i: [] for i in ids}
            for r in conn.execute(
                select(signature_signers)
                .where(s.process_id.in_(ids))
                .order_by(s.process_id, s.number)
            ):
                signers[r.process_id].append(_signer(r))
        return [_process(row, documents[row.id], signers[row.id]) for row in rows]

    def revisions(self, document_id: str) -> list[Revision]:
        r = signature_revisions.c
        query = select(signature_revisions).where(r.document_id == document_id)
        with self.engine.connect() as conn:
            return [
                Revision(
                    row.document_id,
                    row.number,
                    row.kind,
                    row.signer_id,
                    row.sha256_before,
                    row.sha256_after,
                    as_utc(row.created_at),
                )
                for row in conn.execute(query.order_by(r.number))
            ]

    def timeline(self, tenant_id: str, process_id: str) -> list[TimelineEntry]:
        return timeline(self.engine, tenant_id, "signature_process", process_id)

    def due_processes(self, now: datetime, limit: int = 100) -> list[str]:
        """Processes the worker must look at: expired, to finalise, or with a pending
        signature or a reminder due."""
        p, s = signature_processes.c, signature_signers.c
        with self.engine.connect() as conn:
            ids = set(
                conn.execute(
                    select(p.id)
                    .where(
                        p.status == IN_PROGRESS,
                        or_(p.expires_at <= now, p.finalize_due == 1),
                    )
                    .limit(limit)
                ).scalars()
            )
            ids |= set(
                conn.execute(
                    select(s.process_id)
                    .join(signature_processes, p.id == s.process_id)
                    .where(
                        p.status == IN_PROGRESS,
                        or_(s.next_reminder_at <= now, s.status == PENDING),
                    )
                    .limit(limit)
                ).scalars()
            )
        return sorted(ids)

    # -- changes (inside the caller's transaction) ---------------------------------------------

    @staticmethod
    def set_process_in(
        conn: Connection, process_id: str, *, expect_status: str | None = IN_PROGRESS, **values: Any
    ) -> bool:
        p = signature_processes.c
        query = update(signature_processes).where(p.id == process_id)
        if expect_status is not None:
            query = query.where(p.status == expect_status)
        return bool(conn.execute(query.values(**values)).rowcount)

    @staticmethod
    def set_signer_in(
        conn: Connection, signer_id: str, *, expect_status: Sequence[str] = (), **values: Any
    ) -> bool:
        s = signature_signers.c
        query = update(signature_signers).where(s.id == signer_id)
        if expect_status:
            query = query.where(s.status.in_(list(expect_status)))
        return bool(conn.execute(query.values(**values)).rowcount)

    @staticmethod
    def advance_document_in(
        conn: Connection,
        document: Document,
        *,
        new_sha256: str,
        kind: str,
        signer_id: str | None,
        now: datetime,
    ) -> bool:
        """Move a document to its next revision, compare-and-set on the current one (a
        parallel signer who signed the same revision first wins; the other signs again)."""
        d, r = signature_documents.c, signature_revisions.c
        moved = conn.execute(
            update(signature_documents)
            .where(d.id == document.id, d.current_sha256 == document.current_sha256)
            .values(current_sha256=new_sha256)
        ).rowcount
        if not moved:
            return False
        number = conn.execute(
            select(r.number).where(r.document_id == document.id).order_by(r.number.desc())
        ).scalar()
        conn.execute(
            insert(signature_revisions).values(
                id=str(uuid.uuid4()),
                document_id=document.id,
                number=int(number or 0) + 1,
                kind=kind,
                signer_id=signer_id,
                sha256_before=document.current_sha256,
                sha256_after=new_sha256,
                created_at=now,
            )
        )
        return True

    @staticmethod
    def add_evidence_in(conn: Connection, records: Sequence[EvidenceRecord]) -> None:
        append_evidence(conn, records)

    @staticmethod
    def claim_reminder_in(conn: Connection, signer_id: str, due: datetime) -> bool:
        """Take a due reminder: only the caller that saw it due, still due, sends it."""
        s = signature_signers.c
        return bool(
            conn.execute(
                update(signature_signers)
                .where(
                    s.id == signer_id,
                    s.next_reminder_at == due,
                    s.status.in_([NOTIFIED, IDENTIFIED]),
                )
                .values(next_reminder_at=None)
            ).rowcount
        )

    @staticmethod
    def mark_viewed_in(conn: Connection, signer_id: str, **values: Any) -> bool:
        """First viewing only: False when another request recorded it already."""
        s = signature_signers.c
        return bool(
            conn.execute(
                update(signature_signers)
                .where(s.id == signer_id, s.viewed_at.is_(None))
                .values(**values)
            ).rowcount
        )

    # -- tenant settings -----------------------------------------------------------------------

    def frame_ancestors(self, tenant_id: str) -> list[str]:
        t = tenant_signing_settings.c
        with self.engine.connect() as conn:
            found = conn.execute(select(t.frame_ancestors).where(t.tenant_id == tenant_id)).scalar()
        return list(json.loads(found)) if found else []

    def allow_active_content(self, tenant_id: str) -> bool:
        """Whether the tenant accepts PDFs with active content (recorded, not refused)."""
        t = tenant_signing_settings.c
        with self.engine.connect() as conn:
            found = conn.execute(
                select(t.allow_active_content).where(t.tenant_id == tenant_id)
            ).scalar()
        return bool(found)

    def set_signing_settings(
        self,
        tenant_id: str,
        *,
        frame_ancestors: Sequence[str],
        allow_active_content: bool,
        now: datetime,
    ) -> None:
        t = tenant_signing_settings.c
        values = {
            "frame_ancestors": json.dumps(list(frame_ancestors)),
            "allow_active_content": int(allow_active_content),
            "updated_at": now,
        }
        with write_transaction(self.engine) as conn:
            updated = conn.execute(
                update(tenant_signing_settings).where(t.tenant_id == tenant_id).values(**values)
            ).rowcount
            if not updated:
                conn.execute(insert(tenant_signing_settings).values(tenant_id=tenant_id, **values))
