"""The REST API over HTTP (Starlette's test client drives the real ASGI app and database)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.ledger import merkle
from sealpost.ledger.verify import verify_bundle
from tests.support.records import submission


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def api_key(sealpost: Sealpost, tenant_id: str) -> str:
    return sealpost.tenants.issue_api_key(tenant_id, "test").secret


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_reports_database_and_ledger(
    client: TestClient, sealpost: Sealpost, tenant_id: str
) -> None:
    sealpost.log_storage.append([submission(tenant_id, i) for i in range(3)])
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["ledger"]["pending_records"] == 3 and body["ledger"]["tree_size"] == 0
    sealpost.sequencer.seal_pending()
    body = client.get("/healthz").json()
    assert body["ledger"]["tree_size"] == 3 and body["ledger"]["pending_records"] == 0
    assert 0 <= body["ledger"]["last_head_age_seconds"] < 60


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sp_000000000000_wrong"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "nonsense"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_or_wrong_keys_get_the_same_401(
    client: TestClient, headers: dict[str, str], api_key: str
) -> None:
    response = client.get("/v1/ledger/heads/latest", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "type": "urn:sealpost:problem:unauthorized",
        "title": "Missing or invalid credentials",
        "status": 401,
        "detail": "missing or invalid API key",
        "error": "unauthorized",
        "message": "missing or invalid API key",
    }
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_stops_working(
    client: TestClient, sealpost: Sealpost, tenant_id: str
) -> None:
    issued = sealpost.tenants.issue_api_key(tenant_id)
    assert client.get("/v1/ledger/heads/latest", headers=auth(issued.secret)).status_code == 404
    sealpost.tenants.revoke_api_key(issued.id)
    assert client.get("/v1/ledger/heads/latest", headers=auth(issued.secret)).status_code == 401


def test_heads_proofs_and_bundles(
    client: TestClient, sealpost: Sealpost, tenant_id: str, api_key: str, keys_dir: Path
) -> None:
    records = [submission(tenant_id, i) for i in range(9)]
    sealpost.log_storage.append(records[:4])
    sealpost.sequencer.seal_pending()
    sealpost.log_storage.append(records[4:])
    sealpost.sequencer.seal_pending()

    latest = client.get("/v1/ledger/heads/latest", headers=auth(api_key)).json()
    assert latest["tree_size"] == 9
    assert latest["checkpoint"].startswith("test.sealpost.local/ledger\n9\n")
    first = client.get("/v1/ledger/heads/4", headers=auth(api_key)).json()
    assert first["tree_size"] == 4
    assert client.get("/v1/ledger/heads/5", headers=auth(api_key)).status_code == 404

    proof = client.get(f"/v1/ledger/proofs/inclusion/{records[2].id}", headers=auth(api_key)).json()
    assert (proof["leaf_index"], proof["tree_size"]) == (2, 4)
    merkle.verify_inclusion(
        records[2].leaf_hash(),
        2,
        4,
        [base64.b64decode(h) for h in proof["hashes"]],
        base64.b64decode(first["root_hash"]),
    )
    consistency = client.get(
        "/v1/ledger/proofs/consistency", params={"from": 4, "to": 9}, headers=auth(api_key)
    ).json()
    merkle.verify_consistency(
        4,
        9,
        base64.b64decode(first["root_hash"]),
        base64.b64decode(latest["root_hash"]),
        [base64.b64decode(h) for h in consistency["hashes"]],
    )
    bad = client.get(
        "/v1/ledger/proofs/consistency", params={"from": 4, "to": 90}, headers=auth(api_key)
    )
    assert bad.status_code == 422 and "larger than the latest head" in bad.json()["message"]

    bundle = client.get(f"/v1/evidence/{records[7].id}", headers=auth(api_key)).json()
    assert bundle["record"]["id"] == records[7].id
    assert verify_bundle(bundle).ok


def test_an_unsealed_record_answers_409_with_retry_after_or_waits(
    client: TestClient, sealpost: Sealpost, tenant_id: str, api_key: str
) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    response = client.get(f"/v1/evidence/{record.id}", headers=auth(api_key))
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    sealpost.start_background()
    waited = client.get(f"/v1/evidence/{record.id}", params={"wait": 5}, headers=auth(api_key))
    assert waited.status_code == 200, waited.text
    assert waited.json()["record"]["id"] == record.id


def test_one_tenant_never_reads_another_tenants_records(
    client: TestClient, sealpost: Sealpost, tenant_id: str, api_key: str
) -> None:
    other = sealpost.tenants.create("other tenant")
    other_key = sealpost.tenants.issue_api_key(other.id).secret
    mine, theirs = submission(tenant_id), submission(other.id)
    sealpost.log_storage.append([mine, theirs])
    sealpost.sequencer.seal_pending()
    for path in (f"/v1/evidence/{theirs.id}", f"/v1/ledger/proofs/inclusion/{theirs.id}"):
        response = client.get(path, headers=auth(api_key))
        assert response.status_code == 404
        assert theirs.id in response.json()["message"]  # the id asked for, nothing else
        assert other.id not in response.text and "other tenant" not in response.text
    assert client.get(f"/v1/evidence/{theirs.id}", headers=auth(other_key)).status_code == 200
    assert client.get(f"/v1/evidence/{mine.id}", headers=auth(other_key)).status_code == 404


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/healthz",
        "/tsa",
        "/v1/ledger/heads/latest",
        "/v1/ledger/heads/{tree_size}",
        "/v1/ledger/proofs/inclusion/{record_id}",
        "/v1/ledger/proofs/consistency",
        "/v1/evidence/{record_id}",
        "/log/checkpoint",
        "/log/verifier-key",
        "/log/tile/{tile}",
    ):
        assert path in paths


def test_the_embedded_tsa_over_http_answers_openssl(
    client: TestClient, tmp_path: Path, keys_dir: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_text("evidence\n")
    query = tmp_path / "q.tsq"
    subprocess.run(
        ["openssl", "ts", "-query", "-data", data, "-sha256", "-cert", "-out", query], check=True
    )
    response = client.post(
        "/tsa", content=query.read_bytes(), headers={"Content-Type": "application/timestamp-query"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    reply = tmp_path / "r.tsr"
    reply.write_bytes(response.content)
    verified = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-in",
            reply,
            "-queryfile",
            query,
            "-CAfile",
            keys_dir / "root-ca.pem",
            "-untrusted",
            keys_dir / "tsa.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert "Verification: OK" in verified.stdout, verified.stderr

    garbage = client.post(
        "/tsa", content=b"\x30\x03garbage", headers={"Content-Type": "application/timestamp-query"}
    )
    assert garbage.status_code == 200  # RFC 3161: the refusal is in the DER reply
    reply.write_bytes(garbage.content)
    shown = subprocess.run(
        ["openssl", "ts", "-reply", "-in", reply, "-text"], capture_output=True, text=True
    )
    assert "Rejected" in shown.stdout
    wrong_type = client.post("/tsa", content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
