"""Message contents by SHA-256: small ones inside the database, large ones as blob files.

Evidence is about bytes, and a ``250`` may only follow their durable storage.  A typical
certified email is a few kilobytes: storing it in the same transaction as its communication
rows and evidence records makes the whole group commit cost one database sync, where a file
per message costs an fsync of the file and one of its directory each.  Messages above
``inline_max_bytes`` (attachments of megabytes) go to the :class:`BlobStorage` first, fsync'ed,
and the transaction then only names them.  Either way the key is the SHA-256, so a reader
does not care where the bytes are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sealpost.communications.tables import contents
from sealpost.db.blobs import BlobMissing, BlobStorage
from sealpost.db.engine import is_sqlite
from sealpost.errors import InvalidInput, NotFound
from sealpost.ledger.records import Subject


class ContentStore:
    def __init__(self, engine: Engine, blobs: BlobStorage, *, inline_max_bytes: int) -> None:
        self.engine = engine
        self.blobs = blobs
        self.inline_max_bytes = inline_max_bytes

    def put_large(self, items: Sequence[bytes]) -> None:
        """Store the large ones as files (durable on return); call before :meth:`put_in`."""
        large = [data for data in items if len(data) > self.inline_max_bytes]
        if large:
            self.blobs.put_many(large)

    def put_in(self, conn: Connection, items: Sequence[bytes]) -> list[str]:
        """Store the small ones inside the caller's transaction; returns every digest."""
        digests, rows, seen = [], [], set()
        now = datetime.now(UTC)
        for data in items:
            digest = hashlib.sha256(data).hexdigest()
            digests.append(digest)
            if len(data) <= self.inline_max_bytes and digest not in seen:
                seen.add(digest)
                rows.append({"sha256": digest, "size": len(data), "data": data, "created_at": now})
        if rows:
            insert = sqlite_insert if is_sqlite(conn) else pg_insert
            conn.execute(insert(contents).on_conflict_do_nothing(index_elements=["sha256"]), rows)
        return digests

    def put(self, data: bytes) -> str:
        self.put_large([data])
        with self.engine.begin() as conn:
            return self.put_in(conn, [data])[0]

    def get(self, sha256: str, *, of: Subject | None = None) -> bytes:
        """The bytes under ``sha256``.  With ``of`` (whose content this is), bytes missing from
        the blob store are a :class:`BlobMissing` naming that subject and the digest (a server
        fault the operator can act on), not a ``NotFound`` that reads like an unknown id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(contents.c.data).where(contents.c.sha256 == sha256)).first()
        if row is None:
            try:
                return self.blobs.get(sha256)
            except NotFound:
                if of is None:
                    raise
                raise BlobMissing(of.type, of.id, sha256, "content") from None
        data = bytes(row.data)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInput(f"content {sha256} is corrupted in the database")
        return data

    def exists(self, sha256: str) -> bool:
        try:
            self.get(sha256)
        except NotFound:
            return False
        return True
