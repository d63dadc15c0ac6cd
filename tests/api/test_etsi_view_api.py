"""``GET /v1/evidence/{id}?format=etsi``: the record as an ETSI EN 319 522-3 EvidenceType."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import jsonschema
import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.ledger.etsi_view import schema
from sealpost.ledger.verify import verify_bundle
from tests.support.records import non_delivery, submission


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def headers(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id, 't').secret}"}


def test_the_etsi_view_of_a_sealed_record_matches_its_bundle(
    client: TestClient, sealpost: Sealpost, tenant_id: str, headers: dict[str, str]
) -> None:
    accepted, failed = submission(tenant_id), non_delivery(tenant_id, "c-7")
    sealpost.log_storage.append([accepted, failed])
    sealpost.sequencer.seal_pending()
    for record in (accepted, failed):
        response = client.get(f"/v1/evidence/{record.id}?format=etsi", headers=headers)
        assert response.status_code == 200, response.text
        view = response.json()
        jsonschema.Draft202012Validator(schema()).validate(view)
        bundle = client.get(f"/v1/evidence/{record.id}", headers=headers).json()
        assert verify_bundle(bundle).ok
        assert view["evidenceIdentifier"] == bundle["record"]["id"] == record.id
        assert view["erdsEventId"] == bundle["record"]["event"]["uri"]
        assert (
            view["extensions"][0]["value"]["leafHash"] == (bundle["inclusion_proof"]["leaf_hash"])
        )
        assert view["extensions"][0]["value"]["leafHash"] == (
            base64.b64encode(record.leaf_hash()).decode()
        )
    explicit = client.get(f"/v1/evidence/{accepted.id}?format=bundle", headers=headers).json()
    assert explicit["format"] == "sealpost-evidence-bundle"


def test_an_unknown_format_is_a_422_naming_it(
    client: TestClient, sealpost: Sealpost, tenant_id: str, headers: dict[str, str]
) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    sealpost.sequencer.seal_pending()
    response = client.get(f"/v1/evidence/{record.id}?format=xml", headers=headers)
    assert response.status_code == 422
    assert "format" in response.text


def test_an_unsealed_record_has_no_etsi_view_yet(
    client: TestClient, sealpost: Sealpost, tenant_id: str, headers: dict[str, str]
) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    response = client.get(f"/v1/evidence/{record.id}?format=etsi", headers=headers)
    assert response.status_code == 409
