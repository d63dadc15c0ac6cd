"""Which blob store each use gets from the settings (``sealpost.db.blob_stores``): files under
the blob directory by default, an S3 bucket with one prefix per use under
``SEALPOST_BLOB_URL``; a malformed URL is refused when the settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from sealpost.config import Settings
from sealpost.db.blob_stores import USES, blob_storage
from sealpost.db.blobs import BlobStore
from sealpost.db.s3_blobs import S3BlobStore, parse_blob_url
from sealpost.errors import InvalidInput


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg]


def test_the_embedded_default_is_one_directory_per_use(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    roots = {use: blob_storage(settings, use) for use in USES}
    assert all(isinstance(store, BlobStore) for store in roots.values())
    blobs = tmp_path / "data" / "blobs"
    assert {use: store.root for use, store in roots.items()} == {  # type: ignore[attr-defined]
        "blobs": blobs,
        "archive": blobs / "archive",
        "archive-exports": blobs / "archive-exports",
    }


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://evidence/prod/eu", "evidence", "prod/eu/"),
        ("s3://evidence/prod/", "evidence", "prod/"),
        ("s3://evidence", "evidence", ""),
    ],
)
def test_an_s3_url_gives_one_prefix_per_use_in_one_bucket(
    tmp_path: Path, url: str, bucket: str, prefix: str
) -> None:
    settings = _settings(
        tmp_path,
        blob_url=url,
        blob_s3_endpoint_url="http://127.0.0.1:9000",
        blob_s3_access_key_id="AKIDEXAMPLE",
        blob_s3_secret_access_key=SecretStr("wJalrXUtnFEMI"),
        blob_s3_addressing_style="path",
    )
    for use in USES:
        store = blob_storage(settings, use)
        assert isinstance(store, S3BlobStore)
        assert store.location.bucket == bucket
        assert store.location.prefix == f"{prefix}{use}"
        assert store.key("a" * 64) == f"{prefix}{use}/{'a' * 64}"
        assert store.location.endpoint_url == "http://127.0.0.1:9000"
        assert "wJalrXUtnFEMI" not in f"{store.location!r} {store.location}"  # not in logs
    assert "wJalrXUtnFEMI" not in repr(settings)  # the secret stays a SecretStr


@pytest.mark.parametrize(
    "url", ["http://evidence/prod", "s3://", "s3:///prod", "s3://bucket with space", "evidence"]
)
def test_a_malformed_blob_url_is_refused_when_the_settings_are_read(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(ValidationError, match="blob_url"):
        _settings(tmp_path, blob_url=url)


def test_parse_blob_url_refuses_what_is_not_an_s3_url() -> None:
    assert parse_blob_url("s3://b/a/b/") == ("b", "a/b")
    for url in ("http://b/a", "s3://", "s3:///a"):
        with pytest.raises(InvalidInput):
            parse_blob_url(url)


def test_healthz_watches_the_blob_directory_s_disk_only_when_blobs_are_files(
    tmp_path: Path,
) -> None:
    """A full local disk under an unused blob directory must not mark an S3 deployment
    degraded (nor hide a full one: the data directory is still watched)."""
    from types import SimpleNamespace

    from sealpost.api.app import _storage_directories

    files = _storage_directories(SimpleNamespace(settings=_settings(tmp_path)))  # type: ignore[arg-type]
    assert files["blob directory"] == tmp_path / "data" / "blobs"
    on_s3 = _storage_directories(
        SimpleNamespace(settings=_settings(tmp_path, blob_url="s3://evidence/prod"))  # type: ignore[arg-type]
    )
    assert "blob directory" not in on_s3 and on_s3["data directory"] == tmp_path / "data"
