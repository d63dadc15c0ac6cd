"""The ``BlobStorage`` conformance suite: every blob backend must pass every test here.

One suite, parametrised over backends by the ``backend`` fixture: the filesystem
(``BlobStore``) and an S3-compatible object store (``S3BlobStore``, against a real S3 API
server on 127.0.0.1: moto in server mode, ``tests/support/s3.py``).  A backend is one entry
in ``BACKENDS``: a function that yields a :class:`BlobBackend` over a fresh, empty store, with
its own way of corrupting or removing a stored blob behind the store's back.  Each test
checks a promise written on a ``BlobStorage`` method (``sealpost.db.blobs``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealpost.db.blobs import BlobStorage, BlobStore, BlobStoreUnavailable
from sealpost.db.s3_blobs import S3BlobStore, S3Location
from sealpost.errors import InvalidInput, NotFound
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server


@dataclass(frozen=True)
class BlobBackend:
    store: BlobStorage
    reopen: Callable[[], BlobStorage]
    """A second, independent handle on the same blobs (as another process would open it)."""
    corrupt: Callable[[str, bytes], None]
    """Replace the stored bytes of a digest behind the store's back (disk rot, tampering)."""
    remove: Callable[[str], None]
    """Remove a stored blob behind the store's back (an operator's mistake, a lost disk)."""


def _filesystem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    root = tmp_path / "blobs"

    def corrupt(sha256: str, data: bytes) -> None:
        path = BlobStore(root).path(sha256)
        path.chmod(0o600)
        path.write_bytes(data)

    def remove(sha256: str) -> None:
        BlobStore(root).path(sha256).unlink()

    yield BlobBackend(BlobStore(root), lambda: BlobStore(root), corrupt, remove)


def s3_location(server: S3Server, bucket: str, prefix: str = "sealpost/blobs") -> S3Location:
    return S3Location(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        addressing_style="path",
    )


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    server: S3Server = request.getfixturevalue("s3_server")
    location = s3_location(server, server.new_bucket())
    behind = server.client()  # not Sealpost's: plain, unconditional writes

    def corrupt(sha256: str, data: bytes) -> None:
        behind.put_object(Bucket=location.bucket, Key=S3BlobStore(location).key(sha256), Body=data)

    def remove(sha256: str) -> None:
        behind.delete_object(Bucket=location.bucket, Key=S3BlobStore(location).key(sha256))

    yield BlobBackend(S3BlobStore(location), lambda: S3BlobStore(location), corrupt, remove)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[BlobBackend]]] = {
    "filesystem": _filesystem,
    "s3": _s3,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobBackend]:
    """A fresh, empty blob store on each backend in turn."""
    yield from BACKENDS[request.param](request, tmp_path)


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


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, and counts the largest read
    asked of it (a store must not slurp the body in one read)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at, self.largest = data, step, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.largest = max(self.largest, size)
        end = self.at + min(self.step, len(self.data) - self.at if size < 0 else size)
        chunk, self.at = self.data[self.at : end], end
        return chunk


@pytest.mark.parametrize(
    "size",
    [0, 1, 5 * 1024 * 1024 + 7, 40 * 1024 * 1024 + 3],
    ids=["empty", "one-byte", "5-MiB", "40-MiB-multipart"],
)
def test_put_stream_stores_a_body_read_in_bounded_chunks(backend: BlobBackend, size: int) -> None:
    data = os.urandom(size)
    stream = _Trickle(data, 300 * 1024)
    digest, stored = backend.store.put_stream(stream, chunk_size=1 << 20)  # type: ignore[arg-type]
    assert (digest, stored) == (sha256(data), size)
    assert stream.largest <= 1 << 20
    other = backend.reopen()
    assert other.exists(digest)
    assert other.get(digest) == data
    again = backend.store.put_stream(io.BytesIO(data))  # idempotent
    assert again == (digest, size)
    assert other.get(digest) == data


def test_open_streams_the_stored_bytes_in_chunks(backend: BlobBackend) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    digest = backend.store.put(data)
    chunks: list[bytes] = []
    with backend.reopen().open(digest) as stream:
        while chunk := stream.read(64 * 1024):
            assert len(chunk) <= 64 * 1024
            chunks.append(chunk)
    assert b"".join(chunks) == data
    assert len(chunks) >= 48
    with backend.store.open(digest) as stream:
        assert stream.read() == data  # to the end in one read, too
    mail = backend.store.put(EMAIL)
    with backend.store.open(mail) as stream:  # a file: lines, as a MIME parser reads them
        assert stream.readline() == b"From: a@example.com\r\n"
        assert list(stream) == [b"To: b@example.org\r\n", b"\r\n", b"body\r\n"]


def test_open_of_an_unknown_or_malformed_digest(blobs: BlobStorage) -> None:
    with pytest.raises(NotFound):
        blobs.open(sha256(b"never stored"))
    for digest in MALFORMED:
        with pytest.raises(InvalidInput):
            blobs.open(digest)


def test_delete_removes_a_blob_once(backend: BlobBackend) -> None:
    kept, gone = backend.store.put_many([EMAIL, BINARY])
    assert backend.store.delete(gone) is True
    assert not backend.reopen().exists(gone)
    with pytest.raises(NotFound):
        backend.reopen().get(gone)
    assert backend.store.delete(gone) is False  # not there any more
    assert backend.store.get(kept) == EMAIL  # the others stay
    assert backend.store.put(BINARY) == gone  # and it can be stored again
    assert backend.store.get(gone) == BINARY
    for digest in MALFORMED:
        with pytest.raises(InvalidInput):
            backend.store.delete(digest)


@pytest.mark.parametrize("how", ["put", "put_many", "put_stream"])
def test_an_existing_blob_is_never_overwritten(backend: BlobBackend, how: str) -> None:
    """A write of bytes already stored leaves the stored object alone: here it was damaged
    behind our back, and a new write of the right bytes neither repairs nor replaces it
    (evidence is never rewritten; ``get`` keeps refusing it, an operator restores it)."""
    digest = backend.store.put(EMAIL)
    backend.corrupt(digest, b"damaged")
    if how == "put":
        assert backend.store.put(EMAIL) == digest
    elif how == "put_many":
        assert backend.store.put_many([EMAIL, EMAIL]) == [digest, digest]
    else:
        assert backend.store.put_stream(io.BytesIO(EMAIL)) == (digest, len(EMAIL))
    with pytest.raises(InvalidInput, match="corrupt"):
        backend.reopen().get(digest)
    with backend.store.open(digest) as stream:
        assert stream.read() == b"damaged"


def test_a_blob_removed_behind_the_store_is_not_found(backend: BlobBackend) -> None:
    digest = backend.store.put(EMAIL)
    backend.remove(digest)
    assert not backend.store.exists(digest)
    with pytest.raises(NotFound):
        backend.store.get(digest)
    with pytest.raises(NotFound):
        backend.store.open(digest)


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


# -- the S3 backend's own promises -------------------------------------------------------------


def test_s3_objects_are_named_by_digest_under_the_prefix_with_their_sha256_checksum(
    s3_server: S3Server,
) -> None:
    """``<prefix>/<sha256>`` and nothing else; each carries the SHA-256 checksum that S3
    verifies on upload (``x-amz-checksum-sha256``: the content address itself)."""
    bucket = s3_server.new_bucket()
    store = S3BlobStore(s3_location(s3_server, bucket, "tenant-a/blobs"))
    digests = store.put_many([EMAIL, BINARY, b""])
    assert s3_server.keys(bucket) == sorted(f"tenant-a/blobs/{d}" for d in digests)
    client = s3_server.client()
    for digest in digests:
        head = client.head_object(Bucket=bucket, Key=store.key(digest), ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest
    top = S3BlobStore(s3_location(s3_server, bucket, ""))
    assert top.key(digests[0]) == digests[0]
    assert top.get(top.put(EMAIL)) == EMAIL


def test_s3_multipart_upload_never_overwrites_and_leaves_no_upload_behind(
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    store = S3BlobStore(s3_location(s3_server, bucket))
    data = os.urandom(20 * 1024 * 1024 + 1)
    digest, _ = store.put_stream(io.BytesIO(data))
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=store.key(digest), Body=b"damaged")
    assert store.put_stream(io.BytesIO(data)) == (digest, len(data))  # 412 at completion
    with store.open(digest) as stream:
        assert stream.read() == b"damaged"
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_unreachable_s3_store_says_which_and_why(s3_server: S3Server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    location = S3Location(
        "evidence-bucket",
        "sealpost",
        f"http://127.0.0.1:{port}",
        REGION,
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        "path",
    )
    store = S3BlobStore(location)
    for call in (
        lambda: store.put(EMAIL),
        lambda: store.get(sha256(EMAIL)),
        lambda: store.exists(sha256(EMAIL)),
        lambda: store.put_stream(io.BytesIO(EMAIL)),
    ):
        with pytest.raises(BlobStoreUnavailable) as caught:
            call()
        assert f"s3://evidence-bucket/sealpost at http://127.0.0.1:{port}" in caught.value.message
        assert "cannot be reached" in caught.value.message
        assert caught.value.status == 503


def test_a_missing_bucket_is_an_unavailable_store_that_names_it(s3_server: S3Server) -> None:
    store = S3BlobStore(s3_location(s3_server, "no-such-bucket-here"))
    with pytest.raises(BlobStoreUnavailable, match=r"no-such-bucket-here.*NoSuchBucket"):
        store.put(EMAIL)
    with pytest.raises(BlobStoreUnavailable, match="NoSuchBucket"):
        store.get(sha256(EMAIL))
