"""POST /v1/sms and its preview: validation, idempotency, acceptance evidence (no operator)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def auth(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id, 't').secret}"}


@pytest.mark.parametrize("number", ["+4477009", "612345678", "+34 6x2", "+999123456789"])
def test_a_number_that_is_not_one_is_422_naming_the_field_and_the_number(
    client: TestClient, auth: dict[str, str], sealpost: Sealpost, number: str
) -> None:
    answer = client.post("/v1/sms", json={"to": number, "text": "hola"}, headers=auth)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["error"] == "invalid_phone_number"
    assert problem["field"] == "to" and problem["number"] == number
    assert number in problem["detail"] and "to" in problem["detail"]


def test_accepted_means_stored_with_its_submission_acceptance(
    client: TestClient, auth: dict[str, str], sealpost: Sealpost, tenant_id: str
) -> None:
    answer = client.post(
        "/v1/sms",
        json={"to": "+34 612 345 678", "text": "Su cita es mañana", "details": {"case": "A-1"}},
        headers=auth,
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["status"], body["to"], body["encoding"], body["segment_count"]) == (
        "queued",
        "+34612345678",
        "gsm7",
        1,
    )
    detail = client.get(f"/v1/sms/{body['id']}", headers=auth).json()
    assert [e["event"] for e in detail["evidence"]] == ["SubmissionAcceptance"]
    assert detail["segments"] == [
        {
            "number": 1,
            "state": "pending",
            "operator_message_id": None,
            "operator_status": None,
            "reported_at": None,
            "report_sha256": None,
        }
    ]
    (entry,) = sealpost.sms_repository.timeline(tenant_id, body["id"])
    record = entry.record
    assert record["subject"] == {"type": "sms", "id": body["id"]}
    assert record["recipient"]["address"] == "+34612345678"
    assert record["content"]["sha256"] == hashlib.sha256("Su cita es mañana".encode()).hexdigest()
    assert record["details"]["details"] == {"case": "A-1"}


def test_the_same_idempotency_key_answers_the_first_sms_and_another_request_is_409(
    client: TestClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "k-1"}
    first = client.post("/v1/sms", json={"to": "+34612345678", "text": "a"}, headers=headers)
    again = client.post("/v1/sms", json={"to": "+34612345678", "text": "a"}, headers=headers)
    other = client.post("/v1/sms", json={"to": "+34612345678", "text": "b"}, headers=headers)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True


def test_preview_tells_encoding_and_segments_without_sending(
    client: TestClient, auth: dict[str, str], sealpost: Sealpost, tenant_id: str
) -> None:
    spanish = client.post("/v1/sms/preview", json={"text": "Señor, pagó"}, headers=auth).json()
    assert (spanish["encoding"], spanish["segments"]) == ("ucs2", 1)  # ó, not ñ
    long = client.post("/v1/sms/preview", json={"text": "é" * 161}, headers=auth).json()
    assert (long["encoding"], long["units"], long["segments"]) == ("gsm7", 161, 2)
    assert [len(p) for p in long["parts"]] == [153, 8]
    assert client.post("/v1/sms/preview", json={"text": "x"}).status_code == 401


def test_another_tenants_sms_is_404(
    client: TestClient, auth: dict[str, str], sealpost: Sealpost
) -> None:
    sms_id = client.post("/v1/sms", json={"to": "+34612345678", "text": "a"}, headers=auth).json()[
        "id"
    ]
    other = sealpost.tenants.create("other")
    key = sealpost.tenants.issue_api_key(other.id, "t").secret
    answer = client.get(f"/v1/sms/{sms_id}", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 404


def test_the_sms_sender_port_accepts_and_refuses_a_bad_number(
    sealpost: Sealpost, tenant_id: str
) -> None:
    from sealpost.errors import InvalidInput

    sms_id = sealpost.sms.send(tenant_id, "+34612345678", "Código: 123456", {"purpose": "otp"})
    stored = sealpost.sms_repository.get(sms_id)
    assert stored is not None and stored.status == "queued" and stored.details == {"purpose": "otp"}
    with pytest.raises(InvalidInput):
        sealpost.sms.send(tenant_id, "12345", "x", {})
