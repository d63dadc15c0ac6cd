"""Pull mode (``GET /v1/events``), one event's detail, and webhook endpoint management: cursors
that never skip, filters, long polling, tenant isolation, clear 4xx for bad input."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit


def send(env: MailEnv, n: int) -> list[str]:
    ids = []
    for i in range(n):
        code, reply = submit(env, make_message(f"Notice {i}"), [f"bob{i}@{RECIPIENT_DOMAIN}"])
        assert code == 250
        ids.append(reply.decode().split()[-1])
    return ids


def pull_all(client: TestClient, key: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    events, cursor = [], None
    while True:
        page = client.get(
            "/v1/events",
            params={"limit": 3, **params, **({"after": cursor} if cursor else {})},
            headers=key,
        ).json()
        if not page["events"]:
            return events
        events += page["events"]
        cursor = page["next_cursor"]


def test_pull_pages_every_event_once_in_order(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    mail_env.sp.start_events()
    ids = send(mail_env, 4)
    for cid in ids:
        mail_env.wait_status(cid, "delivered")
    deadline = time.monotonic() + 10
    while len(pull_all(client, key)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = pull_all(client, key)
    assert len(events) == 8 and len({e["id"] for e in events}) == 8
    for cid in ids:
        mine = [e for e in events if e["subject"] == f"communications/{cid}"]
        assert [(e["type"], e["sequence"][-1]) for e in mine] == [
            ("sealpost.communication.accepted", "1"),
            ("sealpost.communication.delivered", "2"),
        ]

    delivered = pull_all(client, key, type="sealpost.communication.delivered")
    assert {e["subject"] for e in delivered} == {f"communications/{c}" for c in ids}
    one = [e for e in events if e["subject"] == f"communications/{ids[0]}"]

    detail = client.get(f"/v1/events/{one[1]['id']}", headers=key).json()
    assert detail["event"] == one[1]
    assert detail["published_to_amqp"] is None  # no broker configured: the embedded default
    assert detail["position"] >= 1

    # the end of the stream: an empty page keeps the cursor where it was
    last = client.get("/v1/events", params={"limit": 1000}, headers=key).json()["next_cursor"]
    empty = client.get("/v1/events", params={"after": last}, headers=key).json()
    assert empty == {"events": [], "next_cursor": last}


def test_long_poll_returns_as_soon_as_an_event_arrives(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    mail_env.sp.start_events()
    results: list[tuple[float, dict[str, Any]]] = []

    def poll() -> None:
        started = time.monotonic()
        page = client.get("/v1/events", params={"wait": 15}, headers=key).json()
        results.append((time.monotonic() - started, page))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    send(mail_env, 1)
    poller.join(20)
    waited, page = results[0]
    assert page["events"] and page["events"][0]["type"] == "sealpost.communication.accepted"
    assert 0.4 < waited < 10


def test_tenants_only_see_their_own_events(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    mail_env.sp.start_events()
    send(mail_env, 1)
    deadline = time.monotonic() + 10
    while not pull_all(client, key) and time.monotonic() < deadline:
        time.sleep(0.05)
    mine = pull_all(client, key)
    other = mail_env.sp.tenants.create("someone else")
    other_key = {
        "Authorization": f"Bearer {mail_env.sp.tenants.issue_api_key(other.id, 'x').secret}"
    }
    assert client.get("/v1/events", headers=other_key).json()["events"] == []
    assert client.get(f"/v1/events/{mine[0]['id']}", headers=other_key).status_code == 404
    assert client.get("/v1/events").status_code == 401


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"after": "abc"}, "cursor"),
        ({"after": "-1"}, "cursor"),
        (
            {"type": "sealpost.communication.nope"},
            "type.0: must be one of sealpost.archive.customer_wrote",
        ),
        ({"limit": 0}, "limit"),
        ({"wait": 31}, "wait"),
    ],
)
def test_bad_pull_parameters_are_a_clear_422(
    client: TestClient, key: dict[str, str], params: dict[str, Any], words: str
) -> None:
    response = client.get("/v1/events", params=params, headers=key)
    assert response.status_code == 422
    assert words in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "ftp://example.com/x"}, "http"),
        ({"url": "not a url"}, "http"),
        ({"url": "https://user:pw@example.com/hook"}, "credentials"),
        ({"url": "http://10.1.2.3/hook"}, "not a public address"),
        ({"url": "http://localhost:8000/hook"}, "not a public address"),
        (
            {"url": "https://example.com/hook", "event_types": ["sealpost.nope"]},
            "event_types.0: must be one of *",
        ),
    ],
)
@pytest.mark.parametrize("mail_overrides", [{"certificates_enabled": False}])
def test_endpoint_validation(
    client: TestClient, key: dict[str, str], body: dict[str, Any], words: str
) -> None:
    response = client.post("/v1/webhooks", json=body, headers=key)
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]


def test_endpoint_lifecycle_and_isolation(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    created = client.post(
        "/v1/webhooks",
        json={
            "url": "https://crm.example.com/hooks/sealpost",
            "description": "CRM",
            "event_types": ["sealpost.communication.*", "sealpost.communication.*"],
        },
        headers=key,
    ).json()
    assert created["event_types"] == ["sealpost.communication.*"]
    assert created["enabled"] is True
    listed = client.get("/v1/webhooks", headers=key).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]  # shown once, at creation

    patched = client.patch(
        f"/v1/webhooks/{created['id']}",
        json={"enabled": False, "event_types": ["sealpost.communication.failed"]},
        headers=key,
    ).json()
    assert patched["enabled"] is False and patched["disabled_reason"] == "disabled by the API"
    assert patched["event_types"] == ["sealpost.communication.failed"]

    other = mail_env.sp.tenants.create("another tenant")
    other_key = {
        "Authorization": f"Bearer {mail_env.sp.tenants.issue_api_key(other.id, 'x').secret}"
    }
    for method, path in [
        ("get", f"/v1/webhooks/{created['id']}"),
        ("delete", f"/v1/webhooks/{created['id']}"),
        ("post", f"/v1/webhooks/{created['id']}/test"),
        ("post", f"/v1/webhooks/{created['id']}/rotate-secret"),
        ("get", f"/v1/webhooks/{created['id']}/deliveries"),
    ]:
        assert getattr(client, method)(path, headers=other_key).status_code == 404, path
    assert (
        client.post(
            "/v1/events/replay",
            json={"event_ids": ["x"], "endpoint_id": created["id"]},
            headers=other_key,
        ).status_code
        == 404
    )

    assert client.delete(f"/v1/webhooks/{created['id']}", headers=key).status_code == 204
    assert client.get(f"/v1/webhooks/{created['id']}", headers=key).status_code == 404
