"""``BlobStorage`` on an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage...).

At scale every process (API replicas, SMTP, workers) reads and writes the same bytes, so they
live in a bucket instead of one machine's disk.  The promises are the filesystem store's
(``tests/db/test_blob_conformance.py`` runs the same suite on both):

- **Addressed by content**: object ``<prefix>/<lowercase hex SHA-256>``; nothing else in the
  name, so the digest in an evidence record names the object.
- **Durable before the commit that names it**: every write returns only once S3 answered the
  ``PutObject`` (or ``CompleteMultipartUpload``) with success; the callers store the bytes
  first and commit the rows that refer to them after (``communications/contents.py``,
  ``communications/certificates.py``, ``archive/service.py``, ``archive/export.py``).
- **Never overwritten**: every write is conditional, ``If-None-Match: *`` (the conditional
  write S3 offers since 2024, RFC 9110 §13.1.2); a ``412 Precondition Failed`` means the
  object is already there, and it is left as it is.  A store that ignores the header would
  rewrite the same bytes under the same name, never other bytes.
- **Integrity checked by S3 on upload**: each request carries ``x-amz-checksum-sha256``, the
  digest we computed (for a multipart upload, each part's); S3 refuses a body that does not
  match it.  On the way back :meth:`S3BlobStore.get` hashes the bytes again and refuses a
  corrupted object, like the filesystem store.
- **Bounded memory**: :meth:`S3BlobStore.put_stream` hashes while spooling to a temporary
  file, then uploads in one request, or in parts of :data:`PART_SIZE` above
  :data:`MULTIPART_THRESHOLD`; :meth:`S3BlobStore.open` streams the response body.

The multipart upload is written here rather than left to boto3's transfer manager because
the manager cannot send ``If-None-Match`` on ``CompleteMultipartUpload``: never-overwrite
would become a check-then-put race.

Errors: a missing object is ``NotFound``; a store that cannot be reached or refuses us
(credentials, permissions, no such bucket) is :class:`~sealpost.db.blobs.BlobStoreUnavailable`
naming the bucket, the endpoint and the reason, never a botocore traceback.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sealpost.db.blobs import BlobStorage, BlobStoreUnavailable, check_digest
from sealpost.errors import InvalidInput, NotFound

MULTIPART_THRESHOLD = 16 * 1024 * 1024
"""Bodies above this size go up in parts (S3 takes at most 5 GiB in one ``PutObject``)."""
PART_SIZE = 8 * 1024 * 1024
"""The size of each part but the last (S3's minimum is 5 MiB); one part is held in memory."""

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_EXISTS = frozenset({"412", "PreconditionFailed"})
_RACING = frozenset({"409", "ConditionalRequestConflict"})
"""Another conditional write of the same name is under way: S3 asks to try again."""


@dataclass(frozen=True)
class S3Location:
    """Where the blobs are: a bucket, a key prefix, and how to reach the store."""

    bucket: str
    prefix: str = ""
    """Key prefix without leading or trailing slash; ``""`` puts the digests at the top."""
    endpoint_url: str | None = None
    """``None`` for AWS itself; ``http://127.0.0.1:9000`` for a MinIO, and so on."""
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    """Never in a ``repr`` (log lines, tracebacks with locals, test failure output)."""
    addressing_style: str = "auto"
    """``path`` for most self-hosted stores (``endpoint/bucket/key``), ``virtual`` for
    ``bucket.endpoint/key``; ``auto`` lets botocore choose."""

    def __str__(self) -> str:
        where = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return where + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def under(self, prefix: str) -> S3Location:
        """The same store, one level further down (``archive``, ``archive-exports``)."""
        joined = "/".join(p for p in (self.prefix, prefix.strip("/")) if p)
        return S3Location(
            self.bucket,
            joined,
            self.endpoint_url,
            self.region,
            self.access_key_id,
            self.secret_access_key,
            self.addressing_style,
        )


def parse_blob_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` as (bucket, prefix); ``InvalidInput`` for anything else."""
    if not url.startswith("s3://"):
        raise InvalidInput(f"blob URL {url!r}: only s3://bucket[/prefix] is understood")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise InvalidInput(f"blob URL {url!r} names no bucket")
    return bucket, prefix.strip("/")


def make_client(location: S3Location) -> Any:
    """A boto3 S3 client for ``location``: thread-safe, shared by every thread of a process.

    Short timeouts and one retry: a store that cannot be reached fails within about 10 s
    (5 s to connect, twice), one that accepts and then stalls within about 40 s (20 s per
    read, twice), with :class:`BlobStoreUnavailable`, instead of holding SMTP sessions and the
    group-commit writer for minutes.  Checksums
    are sent by us (SHA-256, the content address), so botocore's own CRC defaults, which
    some S3-compatible stores refuse, are only used where S3 requires them."""
    config = Config(
        connect_timeout=5,
        read_timeout=20,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": location.addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name=location.region or "us-east-1",
        aws_access_key_id=location.access_key_id,
        aws_secret_access_key=location.secret_access_key,
        config=config,
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3BlobStore(BlobStorage):
    """``BlobStorage`` in a bucket of an S3-compatible store, under ``location.prefix``."""

    def __init__(self, location: S3Location, client: Any | None = None) -> None:
        self.location = location
        self.client = client if client is not None else make_client(location)

    def key(self, sha256: str) -> str:
        """The object key of a digest: ``<prefix>/<sha256>``."""
        check_digest(sha256)
        return f"{self.location.prefix}/{sha256}" if self.location.prefix else sha256

    @contextmanager
    def _speaking(self, doing: str) -> Iterator[None]:
        """Turn botocore's failures into ``BlobStoreUnavailable`` that says where and why;
        a ``ClientError`` the caller expects (missing, exists) is re-raised as is."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING | _EXISTS | _RACING:
                raise
            message = exc.response.get("Error", {}).get("Message") or ""
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise BlobStoreUnavailable(
                f"the blob store {self.location} refused to {doing}: "
                f"{code or status} {message}".rstrip()
            ) from None
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(
                f"the blob store {self.location} cannot be reached to {doing}: {exc}"
            ) from None

    # -- writes ---------------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, items: Sequence[bytes]) -> list[str]:
        digests: list[str] = []
        written: set[str] = set()
        for data in items:
            raw = hashlib.sha256(data).digest()
            digest = raw.hex()
            digests.append(digest)
            if digest in written:
                continue
            self._conditional(digest, partial(self._put_object, digest, data, raw))
            written.add(digest)
        return digests

    def _put_object(
        self, sha256: str, body: bytes | BinaryIO, raw: bytes, size: int | None = None
    ) -> object:
        extra = {} if size is None else {"ContentLength": size}
        if not isinstance(body, bytes):
            body.seek(0)  # a retried write sends the whole body again
        return self.client.put_object(
            Bucket=self.location.bucket,
            Key=self.key(sha256),
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=_b64(raw),
            IfNoneMatch="*",
            **extra,
        )

    def _conditional(self, digest: str, write: Callable[[], object]) -> bool:
        """Run a conditional write: True when it wrote, False when the object was already
        there (success too: the bytes under this name are these bytes)."""
        for attempt in range(5):
            try:
                with self._speaking(f"store blob {digest}"):
                    write()
                return True
            except ClientError as exc:
                code = _code(exc)
                if code in _EXISTS:
                    return False
                if code in _RACING and attempt < 4:
                    time.sleep(0.05 * 2**attempt)  # a concurrent write of the same name
                    continue
                raise BlobStoreUnavailable(
                    f"the blob store {self.location} refused to store blob {digest}: {code}"
                ) from None
        raise AssertionError("unreachable")

    def put_stream(self, stream: BinaryIO, *, chunk_size: int = 1 << 20) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile(prefix="sealpost-blob-") as spool:
            while chunk := stream.read(chunk_size):
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
            sha256 = digest.hexdigest()
            spool.seek(0)
            if size <= MULTIPART_THRESHOLD:
                self._conditional(
                    sha256, partial(self._put_object, sha256, spool, digest.digest(), size)
                )
            else:
                self._multipart(sha256, cast(BinaryIO, spool))
        return sha256, size

    def _multipart(self, sha256: str, spool: BinaryIO) -> None:
        """Upload in parts, each checked by S3 against its SHA-256; the upload is completed
        only if no object has the name yet (``If-None-Match: *``), else abandoned."""
        bucket, key = self.location.bucket, self.key(sha256)
        with self._speaking(f"start storing blob {sha256}"):
            upload_id = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"
            )["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            while part := spool.read(PART_SIZE):
                number = len(parts) + 1
                checksum = _b64(hashlib.sha256(part).digest())
                with self._speaking(f"store part {number} of blob {sha256}"):
                    answer = self.client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=part,
                        ChecksumSHA256=checksum,
                    )
                parts.append(
                    {"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}
                )
            completed = self._conditional(
                sha256,
                lambda: self.client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        if not completed:  # the object was there already: drop the parts
            self._abort(key, upload_id)

    def _abort(self, key: str, upload_id: str) -> None:
        # on failure, a lifecycle rule (AbortIncompleteMultipartUpload) cleans up the rest
        with suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=key, UploadId=upload_id
            )

    def delete(self, sha256: str) -> bool:
        if not self.exists(sha256):
            return False
        with self._speaking(f"delete blob {sha256}"):
            self.client.delete_object(Bucket=self.location.bucket, Key=self.key(sha256))
        return True

    # -- reads ----------------------------------------------------------------------------------

    def _get_object(self, sha256: str) -> Any:
        try:
            with self._speaking(f"read blob {sha256}"):
                return self.client.get_object(Bucket=self.location.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise NotFound(f"no blob {sha256}") from None  # the bucket stays internal
            raise

    def get(self, sha256: str) -> bytes:
        answer = self._get_object(sha256)
        with self._speaking(f"read blob {sha256}"):
            data = bytes(answer["Body"].read())
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InvalidInput(f"blob {sha256} is corrupted in the blob store")
        return data

    def open(self, sha256: str) -> BinaryIO:
        body = self._get_object(sha256)["Body"]
        return cast(BinaryIO, io.BufferedReader(_Body(body, self, sha256), 1 << 16))

    def exists(self, sha256: str) -> bool:
        key = self.key(sha256)
        try:
            with self._speaking(f"look up blob {sha256}"):
                self.client.head_object(Bucket=self.location.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True


class _Body(io.RawIOBase):
    """A response body as a raw binary file (wrapped in a ``BufferedReader`` by
    :meth:`S3BlobStore.open`, so ``read``, ``readline`` and iteration all work): a failure
    mid-stream is a ``BlobStoreUnavailable`` naming the store; ``close`` returns the
    connection to the pool."""

    def __init__(self, body: Any, store: S3BlobStore, sha256: str) -> None:
        super().__init__()
        self._body = body
        self._store = store
        self._sha256 = sha256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with self._store._speaking(f"read blob {self._sha256}"):
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
