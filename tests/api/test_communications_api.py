"""REST send and status: the same evidence as SMTP, idempotent retries, listing, isolation."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from email import message_from_bytes

import pytest
from fastapi.testclient import TestClient

from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.ledger.verify import verify_bundle
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv


@pytest.fixture
def client(mail_client: TestClient) -> TestClient:
    return mail_client


@pytest.fixture
def key(mail_key: dict[str, str]) -> dict[str, str]:
    return mail_key


def message(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "from": "care@acme.test",
        "to": [f"ann@{RECIPIENT_DOMAIN}"],
        "subject": "Contract change notice",
        "text": "Your tariff changes on 2027-01-01.",
        "attachments": [
            {
                "filename": "notice.pdf",
                "content_type": "application/pdf",
                "content": base64.b64encode(b"%PDF-1.7 notice").decode(),
            }
        ],
    }
    body.update(extra)
    return body


def test_send_gives_one_communication_per_recipient_with_full_evidence(
    client: TestClient, key: dict[str, str], mail_env: MailEnv
) -> None:
    response = client.post(
        "/v1/communications",
        json=message(cc=[f"ben@{RECIPIENT_DOMAIN}"], bcc=[f"audit@{RECIPIENT_DOMAIN}"]),
        headers=key,
    )
    assert response.status_code == 201, response.text
    sent = response.json()
    assert sorted(c["recipient"] for c in sent["communications"]) == [
        f"ann@{RECIPIENT_DOMAIN}",
        f"audit@{RECIPIENT_DOMAIN}",
        f"ben@{RECIPIENT_DOMAIN}",
    ]
    for ref in sent["communications"]:
        mail_env.wait_status(ref["id"], "delivered")
    delivered = mail_env.peer.received
    assert sorted(r.rcpt_tos[0] for r in delivered) == sorted(
        c["recipient"] for c in sent["communications"]
    )
    headers = message_from_bytes(delivered[0].data)
    assert headers["Bcc"] is None and headers["Message-ID"] == sent["message_id"]

    first = sent["communications"][0]["id"]
    detail = client.get(f"/v1/communications/{first}", headers=key).json()
    assert detail["status"] == "delivered" and detail["via"] == "api"
    assert [e["event"] for e in detail["timeline"]][:2] == [
        "SubmissionAcceptance",
        "RelayToNonERDS",
    ]
    acceptance = detail["timeline"][0]["record"]
    assert acceptance["sender"]["identification"]["method"] == "api-key"
    assert [p.get("filename") for p in acceptance["content"]["parts"]] == [None, "notice.pdf"]

    original = client.get(f"/v1/communications/{first}/original.eml", headers=key)
    assert original.headers["content-type"] == "message/rfc822"
    assert hashlib.sha256(original.content).hexdigest() == detail["content_sha256"]

    evidence = client.get(f"/v1/communications/{first}/evidence?wait=5", headers=key).json()
    assert evidence["pending"] == [] and len(evidence["bundles"]) >= 2
    for bundle in evidence["bundles"]:
        assert verify_bundle(bundle, trust_roots=mail_env.sp.trust_roots).ok

    pdf = client.get(f"/v1/communications/{first}/certificate.pdf", headers=key)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert verify_certificate_pdf(pdf.content, trust_roots=mail_env.sp.trust_roots).ok


def test_a_retried_post_with_the_same_idempotency_key_sends_once(
    client: TestClient, key: dict[str, str], mail_env: MailEnv
) -> None:
    headers = {**key, "Idempotency-Key": "order-7781-notice"}
    first = client.post("/v1/communications", json=message(), headers=headers)
    again = client.post("/v1/communications", json=message(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True
    assert [c["id"] for c in again.json()["communications"]] == [
        c["id"] for c in first.json()["communications"]
    ]
    other = client.post("/v1/communications", json=message(subject="another"), headers=headers)
    assert other.status_code == 409
    mail_env.wait_status(first.json()["communications"][0]["id"], "delivered")
    time.sleep(0.5)
    assert len(mail_env.peer.received) == 1


@pytest.mark.parametrize("replies", [["550 5.1.1 no such user"]])
def test_listing_filters_by_status_and_pages_with_a_cursor(
    client: TestClient, key: dict[str, str], mail_env: MailEnv
) -> None:
    ids = []
    for n in range(5):
        sent = client.post(
            "/v1/communications", json=message(to=[f"p{n}@{RECIPIENT_DOMAIN}"]), headers=key
        ).json()
        ids.append(sent["communications"][0]["id"])
    final = [mail_env.wait_status(i, "failed", "delivered") for i in ids]
    failed = [c.id for c in final if c.status == "failed"]
    assert len(failed) == 1  # the first DATA got the scripted 550

    page = client.get("/v1/communications?status=failed", headers=key).json()
    assert [c["id"] for c in page["items"]] == failed
    assert page["items"][0]["last_reply"] == "550 5.1.1 no such user"

    seen, cursor = [], None
    while True:
        url = "/v1/communications?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=key).json()
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert client.get("/v1/communications?status=lost", headers=key).status_code == 422
    assert client.get("/v1/communications?cursor=garbage", headers=key).status_code == 422


def test_another_tenant_sees_nothing(
    client: TestClient, key: dict[str, str], mail_env: MailEnv
) -> None:
    sent = client.post("/v1/communications", json=message(), headers=key).json()
    cid = sent["communications"][0]["id"]
    other = mail_env.sp.tenants.create("Someone Else")
    other_key = {"Authorization": f"Bearer {mail_env.sp.tenants.issue_api_key(other.id).secret}"}
    for path in ("", "/original.eml", "/certificate.pdf", "/evidence"):
        response = client.get(f"/v1/communications/{cid}{path}", headers=other_key)
        assert response.status_code == 404, path
    assert client.get("/v1/communications", headers=other_key).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"raw": "%%% not base64"}, "raw: not valid base64"),
        (message(to=[]), "at least one recipient"),
        (message(to=["not-an-address"]), "to:"),
        (message(text=None), "text or html is required"),
        (message(to=["b@x.test>\r\nRCPT TO:<c@evil.test"]), "to.0: must not contain a line break"),
        (message(to=["victim@evil.test> NOTIFY=NEVER"]), "to:"),
        (message(to=[("a" * 300) + "@x.test"]), "to:"),
        (message(subject="hi\r\nBcc: someone@evil.test"), "subject: must not contain a line break"),
        (
            message(attachments=[{"filename": "a\r\nX-Evil: 1", "content": "eA=="}]),
            "attachments.0.filename: must not contain a line break",
        ),
        (
            message(attachments=[{"filename": "a", "content_type": "x\r\ny", "content": "eA=="}]),
            "content_type",
        ),
        (
            {
                "raw": base64.b64encode(b"Subject: x\r\n\r\nno from").decode(),
                "recipients": ["a@b.c"],
            },
            "no From header",
        ),
    ],
)
def test_bad_sends_get_a_clear_422(
    client: TestClient, key: dict[str, str], body: dict[str, object], words: str
) -> None:
    response = client.post("/v1/communications", json=body, headers=key)
    assert response.status_code == 422
    assert words in response.json()["message"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"subject": "hi\u2028Bcc: someone@evil.test"}, "line break"),
        ({"subject": "\ud800"}, "subject must be valid Unicode"),
        ({"text": "\ud800"}, "text is not valid Unicode"),
        ({"attachments": [{"filename": "\ud800.pdf", "content": "eA=="}]}, "filename"),
    ],
)
def test_fields_that_cannot_be_written_get_a_422_not_a_500(
    client: TestClient, key: dict[str, str], extra: dict[str, object], words: str
) -> None:
    """Found by fuzzing build_message: a Unicode line separator passed the control-character
    check and the stdlib refused it (ValueError), a lone surrogate (JSON's \\ud800) could
    not be encoded (UnicodeEncodeError): both were 500s."""
    body = json.dumps(message(**extra))  # ASCII JSON: the surrogate travels as \\ud800
    response = client.post(
        "/v1/communications", content=body, headers={**key, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]


def test_a_recipient_given_twice_is_one_communication(
    client: TestClient, key: dict[str, str], mail_env: MailEnv
) -> None:
    headers = {**key, "Idempotency-Key": "twice"}
    body = message(to=[f"ann@{RECIPIENT_DOMAIN}"], cc=[f"ANN@{RECIPIENT_DOMAIN}"])
    response = client.post("/v1/communications", json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert len(response.json()["communications"]) == 1
