"""Content blobs addressed by SHA-256: the contract, and its filesystem backend.

Evidence is about bytes: a message is stored exactly as received, under the hex SHA-256 of
those bytes, so the digest in a record is also the blob's name.  Writes go to a temporary
file, are fsync'ed, then renamed into place (and the directory fsync'ed): a blob that exists
is complete, and writing the same content twice is harmless.

:class:`BlobStorage` is the contract every blob backend keeps (the filesystem one here, the
S3-compatible one in :mod:`sealpost.db.s3_blobs`); ``tests/db/test_blob_conformance.py`` is
the suite every backend must pass.  Callers hold a ``BlobStorage`` and never a path: the
same code runs on one machine's disk and on a bucket shared by many processes.

Errors::

    NotFound (404)                       no blob under this digest (the storage-level answer)
    InvalidInput (422)                   a malformed digest; stored bytes that fail their hash
    BlobStoreUnavailable (503)           the store cannot be reached or refuses us; names which
    BlobMissing (500)                    bytes that a subject's records refer to are gone:
                                         names the subject and the digest
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from sealpost.errors import InvalidInput, NotFound, SealpostError, ServiceUnavailable

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_digest(sha256: str) -> str:
    """``sha256`` when it is exactly 64 lowercase hex digits, else ``InvalidInput`` (a name
    such as ``../../etc/passwd`` never reaches a backend)."""
    if not _HEX64.fullmatch(sha256):
        raise InvalidInput(f"not a SHA-256 digest: {sha256!r}")
    return sha256


class BlobStoreUnavailable(ServiceUnavailable):
    """The blob store cannot be reached, or refuses Sealpost (credentials, permissions, a
    missing bucket): the message says which store and why; nothing was kept; retry once the
    operator fixed it."""

    code = "blob_store_unavailable"
    title = "The blob store is unavailable; retry later"
    retry_after = 5
    detail_is_internal = True
    """The message names the bucket, the internal endpoint and the store's own words: for
    the operator's log (with the incident id the client gets), not for API clients."""


class BlobMissing(SealpostError):
    """Bytes that a subject's records refer to (a communication's content, its certificate)
    are not in the blob store: removed or lost behind Sealpost's back.  A server fault, never
    a 404 (the subject exists): the problem names the subject and the digest, so the operator
    can restore that object from a backup."""

    status = 500
    code = "blob_missing"
    title = "Stored bytes of this resource are missing from the blob store"
    problem_fields = ("subject_type", "subject_id", "sha256")

    def __init__(self, subject_type: str, subject_id: str, sha256: str, what: str) -> None:
        super().__init__(
            f"{subject_type} {subject_id}: its {what} (SHA-256 {sha256}) is missing from "
            "the blob store"
        )
        self.subject_type = subject_type
        self.subject_id = subject_id
        self.sha256 = sha256


class BlobStorage(Protocol):
    """Content blobs named by the lowercase hex SHA-256 of their exact bytes.

    A digest is exactly 64 lowercase hex digits; anything else (uppercase, another length,
    a path such as ``../../etc/passwd``) is refused with ``InvalidInput`` by every method that
    takes one, before the backend is touched.
    """

    def put(self, data: bytes) -> str:
        """Store ``data`` (any bytes, empty included); returns its hex SHA-256.  Durable when
        this returns.  Idempotent: storing the same bytes again, even from several threads at
        once, returns the same digest and leaves one intact blob.
        """

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        """``put`` for each item, durable on return: the digests in the items' order (the same
        content twice gives the same digest twice); an empty sequence stores nothing.
        """

    def get(self, sha256: str) -> bytes:
        """The exact bytes stored under ``sha256``.  ``NotFound`` when no such blob exists;
        ``InvalidInput`` for a malformed digest, and when the stored bytes no longer hash to
        ``sha256`` (corruption is detected, never returned).
        """

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256`` (its content is not checked);
        ``InvalidInput`` for a malformed digest.
        """

    def put_stream(self, stream: BinaryIO, *, chunk_size: int = 1 << 20) -> tuple[str, int]:
        """Store the bytes read from ``stream`` to its end, holding at most about
        ``chunk_size`` of them in memory at once (archives and exports of gigabytes); returns
        their hex SHA-256 and size.  Durable on return, and idempotent, like :meth:`put`.
        """

    def open(self, sha256: str) -> BinaryIO:
        """The stored bytes as a readable binary stream, to ``read`` in chunks and ``close``
        (or use as a context manager); the bytes are not all in memory.  ``NotFound`` when
        no such blob exists; ``InvalidInput`` for a malformed digest.  The bytes are not
        checked against the digest on the way: hash while reading, or use :meth:`get`.
        """

    def delete(self, sha256: str) -> bool:
        """Remove the blob (the archive's purge after retention, stale exports); True when
        it was there, False when it was not; ``InvalidInput`` for a malformed digest.  The
        caller makes sure nothing committed still refers to it.
        """


class BlobStore(BlobStorage):
    """``BlobStorage`` on the local filesystem, under ``root/ab/cd/abcd...``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its hex SHA-256.  Durable when this returns."""
        return self.put_many([data])[0]

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        """Store several blobs; durable on return (each file, then each new directory entry)."""
        digests: list[str] = []
        written: list[Path] = []
        synced_dirs: set[Path] = set()
        for data in items:
            digest = hashlib.sha256(data).hexdigest()
            digests.append(digest)
            target = self.path(digest)
            if target.exists() or target in written:
                continue
            new_dirs = [d for d in (target.parent.parent, target.parent) if not d.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(target)
            synced_dirs.update(d.parent for d in new_dirs)  # a new directory's own entry
        for directory in {p.parent for p in written} | synced_dirs:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return digests

    def put_stream(self, stream: BinaryIO, *, chunk_size: int = 1 << 20) -> tuple[str, int]:
        """Store the bytes read from ``stream`` (to its end) in bounded memory; returns their
        hex SHA-256 and size.  Durable when this returns; idempotent like :meth:`put`."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := stream.read(chunk_size):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            sha256 = digest.hexdigest()
            target = self.path(sha256)
            if target.exists():
                Path(tmp).unlink()
                return sha256, size
            new_dirs = [d for d in (target.parent.parent, target.parent) if not d.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for directory in {target.parent} | {d.parent for d in new_dirs}:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return sha256, size

    def open(self, sha256: str) -> BinaryIO:
        """The stored bytes as a file to stream (not checked against the digest: use
        :meth:`get` for that, or hash while reading)."""
        try:
            return self.path(sha256).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no blob {sha256}") from None

    def delete(self, sha256: str) -> bool:
        """Remove a blob (the archive's purge after retention); False when it was not there."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no blob {sha256}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInput(f"blob {sha256} is corrupted on disk")
        return data

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()
