"""A small filesystem of the test's own (tmpfs), to fill up: the disk-full fault, for real.

Mounting needs root (or CAP_SYS_ADMIN); without it :func:`small_disk` raises ``OSError``
with the reason, and the test skips (or fails under ``SEALPOST_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_disk(size: str = "8m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on a temporary directory; unmounted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="sealpost-disk-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(root)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError as exc:
        root.rmdir()
        raise OSError(f"no mount command: {exc}") from exc
    if done.returncode != 0:
        root.rmdir()
        raise OSError(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield root
    finally:
        for _ in range(50):  # a file may still be open for a moment (SQLite, a log)
            if subprocess.run(["umount", str(root)], capture_output=True, check=False).returncode:
                time.sleep(0.1)
                continue
            break
        else:
            subprocess.run(["umount", "-l", str(root)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the filesystem refuses one more byte; returns it
    (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * chunk)
    assert is_full(directory), f"{directory} still takes writes"
    return filler


def is_full(directory: Path) -> bool:
    """Whether ``directory``'s filesystem refuses a one-byte file."""
    probe = directory / ".probe"
    try:
        with probe.open("wb", buffering=0) as handle:
            handle.write(b"\0")
    except OSError as exc:
        return exc.errno == errno.ENOSPC
    finally:
        probe.unlink(missing_ok=True)
    return False
