"""Retention: purge what a tenant keeps no longer, never what a legal hold covers.

A message is due when it was **archived** more than ``retention_days`` ago.  The archiving
time is Sealpost's own clock, stated in the message's sealed ``Archived`` record; the
``Date:`` header (``sent_at``) is the sender's claim: absent on some mail, wrong on much (a
spam "from 1970" would be purged on arrival, one dated 2099 never).

Each purged message gets its own ``Purged`` evidence record (subject: the message), so the
message's timeline reads Archived … Purged and ``purge_record_id`` points to its own record;
the ledger batches records anyway, so one per message costs what the ``Archived`` ones did.
The row keeps its metadata (write-once, migration 0019; a purge is final, migration 0023);
only the bytes go, and only when no unpurged message of **any** tenant has the same bytes (the
archive's blob namespace is shared: identical bytes are one file).

Another tenant may be archiving the same bytes while they are purged: deleting the file and
committing a row that needs it take the same lock (``ArchiveRepository.lock_blob_in``); the
ingest checks the file is still there under it, and asks for the bytes again (503) if the purge
won the race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from sealpost.archive.hold_repository import HoldRepository
from sealpost.archive.holds import HoldService
from sealpost.archive.repository import ArchiveRepository
from sealpost.config import Settings
from sealpost.db.blobs import BlobStorage
from sealpost.db.engine import write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import ContentInfo, Subject, new_record
from sealpost.ledger.repository import as_utc
from sealpost.logging import get_logger
from sealpost.loops import Loop, periodic

log = get_logger(__name__)

BATCH = 200


@dataclass(frozen=True)
class PurgeResult:
    purged: int = 0
    held: int = 0
    """Due, but kept: an active legal hold covers them."""
    blobs_deleted: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(
            self.purged + other.purged,
            self.held + other.held,
            self.blobs_deleted + other.blobs_deleted,
        )


class RetentionPurger:
    def __init__(
        self,
        repo: HoldRepository,
        archive: ArchiveRepository,
        holds: HoldService,
        blobs: BlobStorage,
        *,
        forget: Callable[[Connection, Sequence[str]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch: int = BATCH,
    ) -> None:
        self.forget = forget
        """Takes purged messages out of the search index in the purge's own transaction: a
        purged message's text is found by no search and kept nowhere."""
        self.repo = repo
        self.archive = archive
        self.holds = holds
        self.blobs = blobs
        self.clock = clock
        self.batch = batch

    def purge_due(self, tenant_id: str | None = None) -> PurgeResult:
        """Purge every tenant's due messages (or one tenant's)."""
        total = PurgeResult()
        for tenant, days in self.repo.tenants_with_retention():
            if tenant_id is None or tenant == tenant_id:
                total += self.purge_tenant(tenant, days)
        return total

    def purge_tenant(self, tenant_id: str, retention_days: int) -> PurgeResult:
        now = self.clock()
        cutoff = now - timedelta(days=retention_days)
        total = PurgeResult()
        after: tuple[datetime, str] | None = None
        while True:
            result, after, more = self._batch(tenant_id, retention_days, now, cutoff, after)
            total += result
            if not more:
                break
        if total.purged or total.held:
            log.info(
                "archive.purged",
                tenant_id=tenant_id,
                purged=total.purged,
                held=total.held,
                blobs_deleted=total.blobs_deleted,
            )
        return total

    def _batch(
        self,
        tenant_id: str,
        retention_days: int,
        now: datetime,
        cutoff: datetime,
        after: tuple[datetime, str] | None,
    ) -> tuple[PurgeResult, tuple[datetime, str] | None, bool]:
        purged: list[Any] = []
        with write_transaction(self.repo.engine) as conn:
            self.archive.settings_in(conn, tenant_id, now)
            self.repo.lock_tenant_in(conn, tenant_id)
            rows = self.repo.expired_in(conn, tenant_id, cutoff, after, self.batch)
            if not rows:
                return PurgeResult(), after, False
            held = self.holds.held_among(conn, tenant_id, [r.id for r in rows])
            records = []
            for row in rows:
                if row.id in held:
                    continue
                record = new_record(
                    tenant_id=tenant_id,
                    event="Purged",
                    subject=Subject("archive_message", row.id),
                    event_time=now,
                    content=ContentInfo(sha256=row.sha256, size=int(row.size)),
                    details={
                        "retention_days": retention_days,
                        "archived_at": as_utc(row.archived_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "archived_record_id": row.record_id,
                    },
                )
                if self.repo.mark_purged_in(conn, row.id, now, record.id):
                    records.append(record)
                    purged.append(row)
            if self.forget is not None:
                self.forget(conn, [r.id for r in purged])
            append_evidence(conn, records)
            last = rows[-1]
            after = (as_utc(last.archived_at), last.id)
        deleted = sum(self._delete_blob(sha) for sha in sorted({r.sha256 for r in purged}))
        result = PurgeResult(len(purged), len(held), deleted)
        return result, after, len(rows) == self.batch

    def _delete_blob(self, sha256: str) -> int:
        """Delete the bytes once nothing unpurged (of any tenant) references them, under the
        blob's lock, which ingest takes too before it commits a row with these bytes."""
        with write_transaction(self.repo.engine) as conn:
            self.archive.lock_blob_in(conn, sha256)
            if self.repo.blob_still_used_in(conn, sha256):
                return 0
            return int(self.blobs.delete(sha256))


def loops(step: Callable[[], object], settings: Settings) -> list[Loop]:
    """The purge round: due messages, then stale export files (any number of processes may
    run it: each row is compare-and-set)."""
    if not settings.archive_purge_enabled:
        return []
    return [periodic("archive-retention", settings.archive_purge_interval_seconds, step)]
