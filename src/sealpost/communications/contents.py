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

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import BinaryIO

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
        data = self._inline(sha256)
        if data is not None:
            return data
        try:
            return self.blobs.get(sha256)
        except NotFound:
            if of is None:
                raise
            raise BlobMissing(of.type, of.id, sha256, "content") from None

    def _inline(self, sha256: str) -> bytes | None:
        """The bytes kept in the database, checked; None if they are in the blob store."""
        with self.engine.connect() as conn:
            row = conn.execute(select(contents.c.data).where(contents.c.sha256 == sha256)).first()
        if row is None:
            return None
        data = bytes(row.data)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInput(f"content {sha256} is corrupted in the database")
        return data

    def stream(
        self, sha256: str, *, of: Subject | None = None, chunk_size: int = 1 << 20
    ) -> tuple[int | None, Iterator[bytes]]:
        """The bytes under ``sha256`` in chunks, in bounded memory, and their size when known.

        A content in the database is one chunk.  A blob is read as it is sent, and checked as
        :meth:`get` checks it: a local file is checked before the first chunk (a corrupted one
        raises ``InvalidInput`` here, as :meth:`get`); on any store the last chunk is held back
        until the whole digest is known, so a corrupted blob (an S3 object) ends the stream
        before its end, never as a complete copy of the wrong bytes.  A missing blob raises
        here, before anything is sent (:class:`BlobMissing` with ``of``)."""
        data = self._inline(sha256)
        if data is not None:
            return len(data), iter((data,))
        try:
            handle = self.blobs.open(sha256)
        except NotFound:
            if of is None:
                raise
            raise BlobMissing(of.type, of.id, sha256, "content") from None
        size: int | None = None
        # no size for a stream without a file descriptor (an S3 body): sent chunked instead
        with contextlib.suppress(OSError, AttributeError, io.UnsupportedOperation):
            size = os.fstat(handle.fileno()).st_size
        if size is not None:
            # a local file: checked once before the answer starts (a read from the page cache,
            # in bounded memory), so a corrupted blob is a clear error, not a cut-off 200;
            # the stream checks again as it sends
            for _ in _checked(handle, sha256, chunk_size, close=False):
                pass  # read to the end: a mismatch raises before the last chunk
            handle.seek(0)
        return size, _checked(handle, sha256, chunk_size)

    def exists(self, sha256: str) -> bool:
        try:
            self.get(sha256)
        except NotFound:
            return False
        return True


def _checked(
    handle: BinaryIO, sha256: str, chunk_size: int, *, close: bool = True
) -> Iterator[bytes]:
    """``handle``'s bytes in chunks, the last one only once the digest matched (a mismatch
    raises ``InvalidInput``, as :meth:`ContentStore.get` says)."""
    digest = hashlib.sha256()
    held: bytes | None = None
    try:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
            if held is not None:
                yield held
            held = chunk
        if digest.hexdigest() != sha256:
            handle.close()
            raise InvalidInput(f"blob {sha256} is corrupted in the blob store")
    finally:
        if close:
            handle.close()
    if held is not None:
        yield held
