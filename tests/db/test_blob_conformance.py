"""The ``BlobStorage`` conformance suite: every blob backend must pass every test here.

One suite, parametrised over backends by the ``backend`` fixture: today the filesystem
(``BlobStore``).  Another backend (e.g. S3-compatible) is one more entry in ``BACKENDS``: a
function that yields a :class:`BlobBackend` over a fresh, empty store, with its own way of
corrupting a stored blob behind the store's back.  Each test checks a promise written on a
``BlobStorage`` method (``sealpost.db.blobs``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealpost.db.blobs import BlobStorage, BlobStore
from sealpost.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class BlobBackend:
    store: BlobStorage
    reopen: Callable[[], BlobStorage]
    """A second, independent handle on the same blobs (as another process would open it)."""
    corrupt: Callable[[str, bytes], None]
    """Replace the stored bytes of a digest behind the store's back (disk rot, tampering)."""


def _filesystem(tmp_path: Path) -> Iterator[BlobBackend]:
    root = tmp_path / "blobs"

    def corrupt(sha256: str, data: bytes) -> None:
        path = BlobStore(root).path(sha256)
        path.chmod(0o600)
        path.write_bytes(data)

    yield BlobBackend(BlobStore(root), lambda: BlobStore(root), corrupt)


BACKENDS: dict[str, Callable[[Path], Iterator[BlobBackend]]] = {
    "filesystem": _filesystem,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    """A fresh, empty blob store on each backend in turn."""
    yield from BACKENDS[request.param](tmp_path)


@pytest.fixture
def blobs(backend: BlobBackend) -> BlobStorage:
    return backend.store


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EMAIL = b"From: a@example.com\r\nTo: b@example.org\r\n\r\nbody\r\n"
BINARY = bytes(range(256)) * 4 + b"\x00\x00\xff\x00"


@pytest.mark.parametrize(
    "data",
    [EMAIL, BINARY, b"", b"\x00", os.urandom(5 * 1024 * 1024)],
    ids=["email", "binary-with-nul", "empty", "one-nul", "5-MiB"],
)
def test_put_returns_the_hex_sha256_and_get_the_exact_bytes(
    backend: BlobBackend, data: bytes
) -> None:
    digest = backend.store.put(data)
    assert digest == sha256(data)
    assert backend.store.exists(digest)
    assert backend.store.get(digest) == data
    other = backend.reopen()  # durable on return: another handle reads it at once
    assert other.exists(digest)
    assert other.get(digest) == data


def test_put_is_idempotent(backend: BlobBackend) -> None:
    first = backend.store.put(EMAIL)
    assert backend.store.put(EMAIL) == first
    assert backend.reopen().put(EMAIL) == first
    assert backend.store.get(first) == EMAIL
    assert not backend.store.exists(sha256(EMAIL + b"\n"))


def test_put_many_stores_each_item_and_returns_digests_in_order(backend: BlobBackend) -> None:
    already = backend.store.put(BINARY)
    items = [EMAIL, b"", BINARY, EMAIL, b"\x00" * 10]
    digests = backend.store.put_many(items)
    assert digests == [sha256(item) for item in items]
    assert digests[2] == already and digests[0] == digests[3]
    other = backend.reopen()
    for digest, item in zip(digests, items, strict=True):
        assert other.get(digest) == item
    assert backend.store.put_many([]) == []


def test_concurrent_puts_of_the_same_content_leave_one_intact_blob(backend: BlobBackend) -> None:
    data = os.urandom(1024 * 1024) + b"\x00"
    threads = 16
    start = threading.Barrier(threads)
    results: list[str] = []
    errors: list[BaseException] = []

    def put(index: int) -> None:
        try:
            start.wait()
            if index % 2:
                results.append(backend.store.put_many([EMAIL, data])[1])
            else:
                results.append(backend.store.put(data))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=put, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert results == [sha256(data)] * threads
    assert backend.reopen().get(sha256(data)) == data
    assert backend.store.get(sha256(EMAIL)) == EMAIL


def test_an_unknown_digest_is_not_found(blobs: BlobStorage) -> None:
    blobs.put(EMAIL)
    for unknown in ("0" * 64, sha256(EMAIL + b"x"), sha256(b"")):
        assert not blobs.exists(unknown)
        with pytest.raises(NotFound):
            blobs.get(unknown)


MALFORMED = [
    "../../etc/passwd",
    "../" * 21 + "a",
    "/etc/passwd",
    sha256(EMAIL).upper(),
    sha256(EMAIL)[:63],
    sha256(EMAIL) + "0",
    sha256(EMAIL) + "\n",
    "\n" + sha256(EMAIL),
    sha256(EMAIL)[:62] + "/.",
    "g" * 64,
    " " * 64,
    "",
]


@pytest.mark.parametrize("digest", MALFORMED)
def test_a_malformed_digest_is_refused(backend: BlobBackend, digest: str) -> None:
    backend.store.put(EMAIL)
    with pytest.raises(InvalidInput):
        backend.store.get(digest)
    with pytest.raises(InvalidInput):
        backend.store.exists(digest)


@pytest.mark.parametrize(
    "damage",
    [b"tampered", b"", EMAIL[:-1], EMAIL + b"\x00", BINARY],
    ids=["replaced", "truncated-to-empty", "truncated", "extended", "another-blob"],
)
def test_corruption_is_detected_on_read(backend: BlobBackend, damage: bytes) -> None:
    digest = backend.store.put(EMAIL)
    backend.corrupt(digest, damage)
    assert backend.store.exists(digest)  # exists does not check the content
    with pytest.raises(InvalidInput, match="corrupt"):
        backend.store.get(digest)
    backend.corrupt(digest, EMAIL)  # repaired: readable again
    assert backend.store.get(digest) == EMAIL


# -- the filesystem backend's own promises -----------------------------------------------------


def test_the_filesystem_store_fans_out_by_digest_and_leaves_no_temporary_files(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path / "blobs")
    digests = store.put_many([EMAIL, BINARY, b""])
    for digest in digests:
        assert store.path(digest) == tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
        assert store.path(digest).is_file()
    files = sorted(p for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert files == sorted(store.path(d) for d in digests)
