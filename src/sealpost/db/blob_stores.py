"""The blob store of each use, chosen by the settings: files or an S3-compatible bucket.

Three uses keep their bytes apart, because their lives differ: communication contents and
certificates (``blobs``) are never deleted; the mail archive's (``archive``) are purged after
their retention period; export ZIPs (``archive-exports``) are removed after a few days.  A
purge in one namespace can then never remove another's bytes, and an operator can put an
object lock or a lifecycle rule on one prefix without touching the others.

``SEALPOST_BLOB_URL`` empty (the embedded default): directories ``<blob_dir>``,
``<blob_dir>/archive`` and ``<blob_dir>/archive-exports``.  ``s3://bucket/prefix``: objects
``<prefix>/blobs/<sha256>``, ``<prefix>/archive/<sha256>``, ``<prefix>/archive-exports/...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sealpost.config import Settings
from sealpost.db.blobs import BlobStorage, BlobStore

if TYPE_CHECKING:
    from sealpost.db.s3_blobs import S3Location

BlobUse = Literal["blobs", "archive", "archive-exports"]
USES: tuple[BlobUse, ...] = ("blobs", "archive", "archive-exports")


def s3_location(settings: Settings) -> S3Location | None:
    """The bucket of ``SEALPOST_BLOB_URL`` with its endpoint and credentials; None for the
    filesystem."""
    if not settings.blob_url:
        return None
    # boto3 and botocore (20 MiB) only where a bucket is used (idle RSS, issue 16)
    from sealpost.db.s3_blobs import S3Location, parse_blob_url

    bucket, prefix = parse_blob_url(settings.blob_url)
    secret = settings.blob_s3_secret_access_key
    return S3Location(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=settings.blob_s3_endpoint_url or None,
        region=settings.blob_s3_region or None,
        access_key_id=settings.blob_s3_access_key_id or None,
        secret_access_key=secret.get_secret_value() if secret else None,
        addressing_style=settings.blob_s3_addressing_style,
    )


def blob_storage(settings: Settings, use: BlobUse) -> BlobStorage:
    """The store for ``use`` (see the module docstring for where each one lives)."""
    location = s3_location(settings)
    if location is None:
        root = settings.resolved_blob_dir
        return BlobStore(root if use == "blobs" else root / use)
    from sealpost.db.s3_blobs import S3BlobStore

    return S3BlobStore(location.under(use))
