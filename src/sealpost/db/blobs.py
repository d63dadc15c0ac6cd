"""Content blobs addressed by SHA-256 on the local filesystem.

Evidence is about bytes: a message is stored exactly as received, under the hex SHA-256 of
those bytes, so the digest in a record is also the blob's name.  Writes go to a temporary
file, are fsync'ed, then renamed into place (and the directory fsync'ed): a blob that exists
is complete, and writing the same content twice is harmless.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from sealpost.errors import InvalidInput, NotFound

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not _HEX64.match(sha256):
            raise InvalidInput(f"not a SHA-256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its hex SHA-256.  Durable when this returns."""
        return self.put_many([data])[0]

    def put_many(self, items: list[bytes]) -> list[str]:
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
