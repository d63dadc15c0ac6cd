"""Storage full: the disk, or the database's own storage, cannot take more bytes.

The embedded default keeps everything under ``SEALPOST_DATA_DIR`` (the SQLite database, its
WAL, the blob files), so a full disk is one failure with three faces: ``ENOSPC`` (or
``EDQUOT``) from the filesystem, SQLite's ``SQLITE_FULL`` ("database or disk is full"), and
PostgreSQL's ``disk_full`` (SQLSTATE 53100) at scale.  Nothing was kept (a blob is renamed
into place only once whole, a transaction commits whole or not at all), and the operator
fixes it by freeing space: the client is told to come back later, in its own protocol's
words — SMTP ``452 4.3.1`` (RFC 5321 §4.2.3 "insufficient system storage"; RFC 3463 X.3.1
"mail system full"), HTTP ``507`` (RFC 4918 §11.5 "Insufficient Storage") with
``Retry-After`` — never a 500, nor a 503 that blames the database.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from sealpost.errors import SealpostError

SQLITE_FULL = 13
"""SQLite's primary result code for "database or disk is full"."""
POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE ``disk_full`` (class 53, insufficient resources)."""
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_BELOW_BYTES = 1024 * 1024
"""Less free space than this is a full disk for ``/healthz``: a message, a WAL page or a
blob no longer fits."""


class StorageFull(SealpostError):
    """Sealpost's storage is full: nothing of the request was kept; retry once space is
    freed (the operator is alerted by the log and ``/healthz``)."""

    status = 507
    code = "storage_full"
    title = "The server's storage is full; retry later"
    retry_after = 60


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc``, or anything it wraps (SQLAlchemy's ``orig``, causes, contexts), says
    that the storage is full."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, StorageFull):
            return True
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if isinstance(current, sqlite3.Error) and current.sqlite_errorcode == SQLITE_FULL:
            return True
        if getattr(current, "sqlstate", None) == POSTGRES_DISK_FULL:
            return True
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                todo.append(inner)
    return False


def free_space_problems(directories: Mapping[str, Path], minimum: int) -> tuple[list[str], bool]:
    """``/healthz``'s words on each filesystem holding one of ``directories`` (named by their
    role, never their path: health answers anyone) with less than ``minimum`` bytes free for
    this process, and whether one is full (under :data:`FULL_BELOW_BYTES`)."""
    problems: list[str] = []
    full = False
    seen: set[int] = set()
    for role, directory in directories.items():
        try:
            device = os.stat(directory).st_dev
            free = shutil.disk_usage(directory).free
        except OSError:  # not created yet: nothing written there so far
            continue
        if device in seen:
            continue
        seen.add(device)
        if free < min(minimum, FULL_BELOW_BYTES):
            full = True
            problems.append(f"storage is full: the {role} has {free} bytes free; writes fail")
        elif free < minimum:
            problems.append(f"storage is low: the {role} has {free} bytes free")
    return problems, full
