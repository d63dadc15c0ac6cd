"""Export of a case: a thread, a legal hold's messages or a query's, as one ZIP.

``messages/<n>-<id>.eml`` (byte-exact), ``mailbox.mbox`` (mboxrd, RFC 4155: every line that
starts with ``From `` after any number of ``>`` gets one more ``>``, so a reader can undo it
exactly), ``evidence/<record id>.json`` (each message's sealed ``Archived`` bundle),
``manifest.json`` (every other file with its SHA-256 and size, each message with its record)
and ``chain-of-custody.pdf`` (sealed; :mod:`sealpost.archive.custody`).  Built in a temporary
file with bounded memory (messages are streamed from the blob store), then kept in the
``archive-exports`` blob namespace by its SHA-256; the ``ExportCreated`` record states that
digest and the manifest's.  Purged messages are listed without bytes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import IO, Any, BinaryIO

from cryptography import x509

from sealpost.archive.custody import FORMAT as EXPORT_FORMAT
from sealpost.archive.custody import MANIFEST, REPORT, CustodyFacts, render_custody_report
from sealpost.archive.custody import VERSION as EXPORT_VERSION
from sealpost.archive.hold_repository import HoldRepository
from sealpost.archive.holds import HoldService, actor, actor_words, may_hold
from sealpost.archive.model import Viewer
from sealpost.archive.queries import QueryMatcher, SearchQuery
from sealpost.archive.repository import ArchiveRepository
from sealpost.certificates.seal import seal_pdf
from sealpost.db.blobs import BlobStorage
from sealpost.db.engine import write_transaction
from sealpost.errors import Conflict, Gone, InvalidInput, NotFound
from sealpost.events.outbox import append_evidence
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import Subject, new_record
from sealpost.ledger.repository import as_utc, as_utc_or_none
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity

MAX_EXPORT_MESSAGES = 20_000
"""An export is built while the request waits: a larger case is split (by date range)."""
EVIDENCE_WAIT_SECONDS = 5.0
"""How long an export waits for the newest Archived records to be sealed (the ledger seals
within about a second); what is still pending then is stated, never faked."""
CHUNK = 1 << 16
KEEP_EXPORTS_DAYS = 30
"""An export's ZIP is kept this long for download, then removed (its description stays)."""


@dataclass(frozen=True)
class Export:
    id: str
    tenant_id: str
    kind: str
    thread_id: str | None
    hold_id: str | None
    query: str | None
    created_by: str
    created_at: datetime
    message_count: int
    pending_evidence: int
    size: int
    sha256: str
    manifest_sha256: str
    record_id: str
    removed_at: datetime | None = None


def export_from_row(row: Any) -> Export:
    return Export(
        id=row.id,
        tenant_id=row.tenant_id,
        kind=row.kind,
        thread_id=row.thread_id,
        hold_id=row.hold_id,
        query=row.query,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        message_count=int(row.message_count),
        pending_evidence=int(row.pending_evidence),
        size=int(row.size),
        sha256=row.sha256,
        manifest_sha256=row.manifest_sha256,
        record_id=row.record_id,
        removed_at=as_utc_or_none(getattr(row, "removed_at", None)),
    )


def _from_line(sender: str, moment: datetime) -> bytes:
    """The mbox separator (RFC 4155 §2): ``From <sender> <asctime date>``."""
    who = sender if sender and " " not in sender else "MAILER-DAEMON"
    return f"From {who} {moment.strftime('%a %b %d %H:%M:%S %Y')}\n".encode()


def write_mboxrd(out: IO[bytes], stream: BinaryIO) -> None:
    """Copy one message into an mbox, quoting ``>*From `` lines (mboxrd), in bounded memory:
    a line longer than a chunk is copied in pieces, only a piece at a line start is quoted."""
    at_start = True
    last = b"\n"
    while piece := stream.readline(CHUNK):
        if at_start and piece.lstrip(b">").startswith(b"From "):
            out.write(b">")
        out.write(piece)
        last = piece[-1:]
        at_start = last == b"\n"
    if last != b"\n":
        out.write(b"\n")
    out.write(b"\n")  # the blank line before the next "From " line


class ExportService:
    def __init__(
        self,
        repo: HoldRepository,
        archive: ArchiveRepository,
        holds: HoldService,
        matcher: QueryMatcher,
        ledger: LedgerReader,
        blobs: BlobStorage,
        exports: BlobStorage,
        *,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        tenant_name: Callable[[str], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        evidence_wait: float = EVIDENCE_WAIT_SECONDS,
    ) -> None:
        self.repo = repo
        self.archive = archive
        self.holds = holds
        self.matcher = matcher
        self.ledger = ledger
        self.blobs = blobs
        self.exports = exports
        self.seal = seal
        self.timestamper = timestamper
        self.trust_roots = list(trust_roots)
        self.tenant_name = tenant_name
        self.clock = clock
        self.evidence_wait = evidence_wait

    def _selection(
        self,
        viewer: Viewer,
        thread_id: str | None,
        hold_id: str | None,
        query: SearchQuery | None,
    ) -> tuple[str, dict[str, Any], list[str]]:
        given = [x for x in (thread_id, hold_id, query) if x is not None]
        if len(given) != 1:
            raise InvalidInput("give one of thread_id, hold_id or query")
        tenant_id = viewer.tenant_id
        if thread_id is not None:
            if self.archive.thread(viewer, thread_id) is None:
                raise NotFound(f"no thread {thread_id}")
            with self.repo.engine.connect() as conn:
                ids = self.repo.thread_message_ids_in(conn, tenant_id, thread_id)
            return "thread", {"thread_id": thread_id}, ids
        if hold_id is not None:
            hold = self.holds.get(viewer, hold_id)
            return "hold", {"hold_id": hold_id}, self.holds.covered_ids(tenant_id, hold)
        assert query is not None
        ids = self.matcher.matching_ids(tenant_id, query)
        return "query", {"query": query.public()}, ids

    def create(
        self,
        viewer: Viewer,
        *,
        thread_id: str | None = None,
        hold_id: str | None = None,
        query: SearchQuery | None = None,
    ) -> Export:
        """Build, seal and keep the export; an ``ExportCreated`` record states it."""
        may_hold(viewer)
        kind, selection, ids = self._selection(viewer, thread_id, hold_id, query)
        if not ids:
            raise InvalidInput("the selection matches no archived message: nothing to export")
        if len(ids) > MAX_EXPORT_MESSAGES:
            raise InvalidInput(
                f"the selection matches {len(ids)} messages, more than {MAX_EXPORT_MESSAGES} "
                "in one export: split it (by date range)"
            )
        tenant_id = viewer.tenant_id
        now = self.clock()
        export_id = str(uuid.uuid4())
        with self.repo.engine.connect() as conn:
            rows = self.repo.message_rows_in(conn, ids)
        # the ledger seals records in the order they were appended: once the newest message's
        # record is sealed (or the wait is over) each bundle is fetched as its file is written
        newest = max(rows, key=lambda r: (as_utc(r.archived_at), r.id))
        self.ledger.bundles([newest.record_id], tenant_id, self.evidence_wait)

        with tempfile.TemporaryFile() as spool:
            facts, manifest_sha = self._write_zip(
                spool, export_id, tenant_id, viewer, now, selection, rows
            )
            spool.seek(0)
            sha256, size = self.exports.put_stream(spool)
        record = new_record(
            tenant_id=tenant_id,
            event="ExportCreated",
            subject=Subject("archive_export", export_id),
            event_time=now,
            details={
                "kind": kind,
                **{
                    k: (json.dumps(v, sort_keys=True) if k == "query" else v)
                    for k, v in selection.items()
                },
                "created_by": actor(viewer),
                "message_count": len(rows),
                "pending_evidence": facts.pending_evidence,
                "zip_sha256": sha256,
                "zip_size": size,
                "manifest_sha256": manifest_sha,
            },
        )
        row = {
            "id": export_id,
            "tenant_id": tenant_id,
            "kind": kind,
            "thread_id": selection.get("thread_id"),
            "hold_id": selection.get("hold_id"),
            "query": query.to_json() if query else None,
            "created_by": actor(viewer),
            "created_at": now,
            "message_count": len(rows),
            "pending_evidence": facts.pending_evidence,
            "size": size,
            "sha256": sha256,
            "manifest_sha256": manifest_sha,
            "record_id": record.id,
        }
        with write_transaction(self.repo.engine) as conn:
            self.repo.insert_export_in(conn, row)
            append_evidence(conn, [record])
        return export_from_row(SimpleNamespace(**row))

    def _write_zip(
        self,
        spool: IO[bytes],
        export_id: str,
        tenant_id: str,
        viewer: Viewer,
        now: datetime,
        selection: dict[str, Any],
        rows: list[Any],
    ) -> tuple[CustodyFacts, str]:
        files: dict[str, dict[str, Any]] = {}
        messages: list[dict[str, Any]] = []
        width = len(str(len(rows)))
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            with tempfile.TemporaryFile() as mbox:
                for n, row in enumerate(rows, start=1):
                    entry: dict[str, Any] = {
                        "n": n,
                        "id": row.id,
                        "sha256": row.sha256,
                        "size": int(row.size),
                        "message_id": row.message_id,
                        "subject": row.subject,
                        "from": row.from_address,
                        "archived_at": as_utc(row.archived_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "thread_id": row.thread_id,
                        "record_id": row.record_id,
                        "file": None,
                        "evidence": None,
                    }
                    purged = as_utc_or_none(row.purged_at)
                    if purged is not None:
                        entry["purged_at"] = purged.strftime("%Y-%m-%dT%H:%M:%SZ")
                        entry["purge_record_id"] = row.purge_record_id
                    else:
                        name = f"messages/{n:0{width}d}-{row.id}.eml"
                        files[name] = self._copy_message(zf, name, row.sha256)
                        entry["file"] = name
                        mbox.write(_from_line(row.from_address, as_utc(row.archived_at)))
                        with self.blobs.open(row.sha256) as stream:
                            write_mboxrd(mbox, stream)
                    bundle = self._bundle(row.record_id, tenant_id)
                    if bundle is not None:
                        name = f"evidence/{row.record_id}.json"
                        data = (json.dumps(bundle, sort_keys=True, indent=2) + "\n").encode()
                        zf.writestr(name, data)
                        digest = hashlib.sha256(data).hexdigest()
                        files[name] = {"sha256": digest, "size": len(data)}
                        entry["evidence"] = name
                    else:
                        entry["evidence_pending"] = True
                    messages.append(entry)
                if any(m["file"] for m in messages):
                    mbox.seek(0)
                    files["mailbox.mbox"] = self._copy_stream(zf, "mailbox.mbox", mbox)
            pending = sum(1 for m in messages if m.get("evidence_pending"))
            manifest = {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "export_id": export_id,
                "tenant_id": tenant_id,
                "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "created_by": actor(viewer),
                "selection": selection,
                "message_count": len(messages),
                "files": files,
                "messages": messages,
                "mbox": "mboxrd (RFC 4155); separators use the archiving time",
            }
            raw = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
            manifest_bytes = raw.encode()
            zf.writestr(MANIFEST, manifest_bytes)
            manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
            facts = CustodyFacts(
                export_id=export_id,
                tenant_name=self.tenant_name(tenant_id),
                created_at=now,
                created_by=actor_words(viewer),
                selection=selection,
                message_count=len(messages),
                purged_count=sum(1 for m in messages if m["file"] is None),
                pending_evidence=pending,
                manifest_sha256=manifest_sha,
                messages=tuple(messages),
            )
            pdf = seal_pdf(
                render_custody_report(facts),
                seal=self.seal,
                timestamper=self.timestamper,
                trust_roots=self.trust_roots,
                reason="Chain of custody of a mail archive export",
            )
            zf.writestr(REPORT, pdf)
        return facts, manifest_sha

    def _bundle(self, record_id: str, tenant_id: str) -> dict[str, object] | None:
        try:
            return self.ledger.bundle(record_id, tenant_id)
        except NotSealedYet:
            return None

    def _copy_message(self, zf: zipfile.ZipFile, name: str, sha256: str) -> dict[str, Any]:
        """Never export bytes that are not what was archived: a missing or damaged blob stops
        the export (nothing is kept or recorded) and says which message."""
        try:
            with self.blobs.open(sha256) as stream:
                got = self._copy_stream(zf, name, stream)
        except NotFound:
            got = None
        if got is None or got["sha256"] != sha256:
            raise Conflict(
                f"the archived bytes of {name} are missing or do not match their SHA-256 "
                "(the blob store is damaged): nothing was exported"
            )
        return got

    @staticmethod
    def _copy_stream(zf: zipfile.ZipFile, name: str, stream: IO[bytes]) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        with zf.open(name, "w", force_zip64=True) as member:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                member.write(chunk)
        return {"sha256": digest.hexdigest(), "size": size}

    def get(self, viewer: Viewer, export_id: str) -> Export:
        may_hold(viewer)
        row = self.repo.export(viewer.tenant_id, export_id)
        if row is None:
            raise NotFound(f"no export {export_id}")
        return export_from_row(row)

    def open(self, viewer: Viewer, export_id: str) -> tuple[Export, BinaryIO]:
        found = self.get(viewer, export_id)
        if found.removed_at is not None:
            raise Gone(
                f"export {export_id} was removed {KEEP_EXPORTS_DAYS} days after it was made "
                "(its description and ExportCreated record stay): export again"
            )
        return found, self.exports.open(found.sha256)

    def remove_stale(self) -> int:
        """Remove the ZIPs made more than :data:`KEEP_EXPORTS_DAYS` ago: a copy left in
        Sealpost would keep messages past their retention."""
        now = self.clock()
        removed = 0
        while True:
            with write_transaction(self.repo.engine) as conn:
                stale = self.repo.stale_exports_in(
                    conn, now - timedelta(days=KEEP_EXPORTS_DAYS), 100
                )
                done = [r for r in stale if self.repo.mark_export_removed_in(conn, r.id, now)]
            for row in done:  # after the commit: a failed commit leaves the file, not a hole
                self.exports.delete(row.sha256)
            removed += len(done)
            if len(stale) < 100:
                return removed
