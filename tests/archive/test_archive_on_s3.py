"""The mail archive with its blobs in an S3-compatible store (issue 17): ingest, the raw
download (streamed from the object), an export ZIP and the retention purge, each in its own
prefix of the bucket, against a real S3 API server on 127.0.0.1 (moto in server mode)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.config import Settings
from tests.archive.test_holds import T0, Clock, agent, ingest, mail
from tests.support.s3 import S3Server

PREFIX = "archive-test"


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def settings(settings: Settings, s3_server: S3Server, bucket: str) -> Settings:
    return settings.model_copy(update=s3_server.blob_settings(bucket, PREFIX))


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


def test_archive_ingest_download_export_and_purge_on_s3(
    sealpost: Sealpost, tenant_id: str, client: TestClient, s3_server: S3Server, bucket: str
) -> None:
    clock = Clock()
    sealpost.clock = clock
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"], retention_days=30)
    admin = {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}
    kept_raw = mail("Reclamación 7", body="Adjunto la factura.\n" * 20000)  # ~400 KiB
    gone_raw = mail("Otra cosa", sender="otro@gmail.com")
    kept, gone = ingest(sealpost, tenant_id, kept_raw), ingest(sealpost, tenant_id, gone_raw)
    assert s3_server.keys(bucket) == sorted(
        f"{PREFIX}/archive/{hashlib.sha256(raw).hexdigest()}" for raw in (kept_raw, gone_raw)
    )

    got = client.get(f"/v1/archive/messages/{kept.id}/raw", headers=admin)
    assert got.status_code == 200 and got.content == kept_raw

    auditor = agent(client, admin, "auditora@acme.es", "auditor")
    hold = {"kind": "thread", "thread_id": kept.thread_id, "reason": "Demanda 1"}
    r = client.post("/v1/archive/holds", json=hold, headers=auditor)
    assert r.status_code == 201, r.text
    r = client.post("/v1/archive/exports", json={"thread_id": kept.thread_id}, headers=auditor)
    assert r.status_code == 201, r.text
    export = r.json()
    assert f"{PREFIX}/archive-exports/{export['sha256']}" in s3_server.keys(bucket)
    zipped = client.get(f"/v1/archive/exports/{export['id']}/download", headers=auditor)
    assert zipped.status_code == 200
    assert hashlib.sha256(zipped.content).hexdigest() == export["sha256"]

    clock.now = T0 + timedelta(days=400)
    result = sealpost.archive_holds.purger.purge_due()
    assert (result.purged, result.held, result.blobs_deleted) == (1, 1, 1)
    keys = s3_server.keys(bucket, f"{PREFIX}/archive/")
    assert keys == [f"{PREFIX}/archive/{kept.sha256}"]  # the purged one's object is gone
    assert client.get(f"/v1/archive/messages/{gone.id}/raw", headers=admin).status_code == 410
    assert client.get(f"/v1/archive/messages/{kept.id}/raw", headers=admin).content == kept_raw
