"""Signed webhooks to a real HTTP receiver on 127.0.0.1: retries through 500s and timeouts,
signatures checked with the ``standardwebhooks`` library, per-subject order, secret rotation,
automatic disabling, replay, the test send and the delivery log."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.events.conftest import FAST_RETRIES
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit
from tests.support.webhook_receiver import WebhookReceiver


def register(client: TestClient, key: dict[str, str], url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, **extra}, headers=key)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    return created


def send_one(env: MailEnv, subject: str = "Notice") -> str:
    code, reply = submit(env, make_message(subject), [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 250, reply
    return reply.decode().split()[-1]  # the communication id the 250 names


def wait(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_retried_through_500_and_a_timeout_then_delivered_in_order_and_verifiable(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver([500, "timeout"], hang_seconds=2.5) as hook:
        endpoint = register(client, key, hook.url)
        mail_env.sp.start_events()
        cid = send_one(mail_env)
        requests = hook.wait_for(4)  # accepted ×3 (500, timeout, 200), then delivered
        time.sleep(0.3)
        requests = hook.requests

    types = [r.event["type"] for r in requests]
    assert types == [
        "sealpost.communication.accepted",
        "sealpost.communication.accepted",
        "sealpost.communication.accepted",
        "sealpost.communication.delivered",  # waited for the accepted one: order per subject
    ]
    assert [r.answered for r in requests] == [500, "timeout", 200, 200]
    assert len({r.headers["webhook-id"] for r in requests[:3]}) == 1  # one id across retries
    assert all(r.event["subject"] == f"communications/{cid}" for r in requests)
    assert requests[0].headers["content-type"].startswith("application/cloudevents+json")

    receiver = Webhook(endpoint["secret"])
    for request in requests:  # what the integrator's code does with every request
        event = receiver.verify(request.body, request.headers)
        assert event["id"] == request.headers["webhook-id"]
    tampered = requests[-1].body.replace(b'"delivered"', b'"failed"')
    assert tampered != requests[-1].body
    with pytest.raises(WebhookVerificationError):
        receiver.verify(tampered, requests[-1].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(requests[-1].body, requests[-1].headers)
    replayed_later = dict(
        requests[-1].headers, **{"webhook-timestamp": str(int(time.time()) + 3600)}
    )
    with pytest.raises(WebhookVerificationError):
        receiver.verify(requests[-1].body, replayed_later)

    # the delivery log tells the same story
    log = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=key).json()["items"]
    accepted = next(d for d in log if d["event_type"] == "sealpost.communication.accepted")
    assert accepted["state"] == "delivered" and accepted["attempts"] == 3
    detail = client.get(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{accepted['id']}", headers=key
    ).json()
    statuses = [(a["status_code"], a["success"]) for a in detail["attempts_log"]]
    assert statuses == [(500, False), (None, False), (200, True)]
    assert "timed out" in detail["attempts_log"][1]["error"]
    assert detail["attempts_log"][0]["response_body"] == "receiver says no"


def test_filters_and_the_documented_signed_string(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver() as only_delivered, WebhookReceiver() as everything:
        narrow = register(
            client, key, only_delivered.url, event_types=["sealpost.communication.delivered"]
        )
        register(client, key, everything.url, event_types=["sealpost.communication.*"])
        mail_env.sp.start_events()
        send_one(mail_env)
        everything.wait_for(2)
        only_delivered.wait_for(1)
        time.sleep(0.2)
        assert [r.event["type"] for r in only_delivered.requests] == [
            "sealpost.communication.delivered"
        ]
        request = only_delivered.requests[0]

    # docs/events.md: HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}", base64
    import base64
    import hashlib
    import hmac

    secret = base64.b64decode(narrow["secret"].removeprefix("whsec_"))
    signed = (
        f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
        + request.body
    )
    expected = "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == expected


def test_secret_rotation_signs_with_both_secrets_meanwhile(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver() as hook:
        endpoint = register(client, key, hook.url, event_types=["sealpost.communication.accepted"])
        rotated = client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=key)
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != endpoint["secret"]
        assert rotated.json()["previous_secret_valid_until"] is not None
        mail_env.sp.start_events()
        send_one(mail_env)
        request = hook.wait_for(1)[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(request.body, request.headers)  # receivers already switched
    Webhook(endpoint["secret"]).verify(request.body, request.headers)  # ... or not yet


@pytest.mark.parametrize("mail_overrides", [{**FAST_RETRIES, "webhook_retry_window_seconds": 1.5}])
def test_an_endpoint_failing_for_the_whole_window_is_disabled_then_resumes_in_order(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver(default=503) as broken, WebhookReceiver() as watcher:
        endpoint = register(client, key, broken.url)
        register(client, key, watcher.url, event_types=["sealpost.webhook_endpoint.*"])
        mail_env.sp.start_events()
        first = send_one(mail_env, "First")

        def disabled() -> bool:
            got = client.get(f"/v1/webhooks/{endpoint['id']}", headers=key).json()
            return got["enabled"] is False

        wait(disabled, what="the endpoint to be disabled")
        state = client.get(f"/v1/webhooks/{endpoint['id']}", headers=key).json()
        assert "failed for its whole retry window" in state["disabled_reason"]
        assert state["failing_since"] is not None
        notice = watcher.wait_for(1)[0].event  # the integrator is told, on another channel
        assert notice["type"] == "sealpost.webhook_endpoint.disabled"
        assert notice["data"]["endpoint_id"] == endpoint["id"]
        assert notice["data"]["last_status"] == 503
        pulled = client.get(
            "/v1/events", params={"type": "sealpost.webhook_endpoint.disabled"}, headers=key
        ).json()["events"]
        assert [e["id"] for e in pulled] == [notice["id"]]
        attempts_while_failing = len(broken.requests)
        assert attempts_while_failing >= 3  # retried with backoff over the window

        second = send_one(mail_env, "Second")  # happens while disabled: kept, not attempted
        mail_env.wait_status(second, "delivered")
        time.sleep(0.5)
        assert len(broken.requests) == attempts_while_failing

        broken.script.default = 200  # the integrator fixed the endpoint ...
        enabled = client.patch(
            f"/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=key
        )
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        wait(lambda: sum(r.answered == 200 for r in broken.requests) >= 4, what="the backlog")
        time.sleep(0.3)
        ok = [r.event for r in broken.requests if r.answered == 200]

    # the first event's window was over: it stays failed (replay can resend it); the paused
    # backlog flows, in order per subject -- its own "disabled" notice included.
    by_subject: dict[str, list[str]] = {}
    for event in ok:
        by_subject.setdefault(event["subject"], []).append(event["type"])
    assert by_subject == {
        f"communications/{first}": ["sealpost.communication.delivered"],
        f"webhooks/{endpoint['id']}": ["sealpost.webhook_endpoint.disabled"],
        f"communications/{second}": [
            "sealpost.communication.accepted",
            "sealpost.communication.delivered",
        ],
    }
    failed = client.get(
        f"/v1/webhooks/{endpoint['id']}/deliveries", params={"state": "failed"}, headers=key
    ).json()["items"]
    assert any(d["event_type"] == "sealpost.communication.accepted" for d in failed)


def test_replay_by_id_and_by_time_range(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver() as hook:
        endpoint = register(client, key, hook.url)
        mail_env.sp.start_events()
        send_one(mail_env)
        first = hook.wait_for(2)
        ids = [r.headers["webhook-id"] for r in first]

        by_id = client.post("/v1/events/replay", json={"event_ids": ids[:1]}, headers=key)
        assert by_id.status_code == 202 and by_id.json() == {"events": 1, "deliveries": 1}
        again = hook.wait_for(3)[2]
        assert again.headers["webhook-id"] == ids[0]  # the same id: receivers can deduplicate
        assert again.body == first[0].body  # the same bytes

        by_range = client.post(
            "/v1/events/replay",
            json={"from": "2000-01-01T00:00:00Z", "endpoint_id": endpoint["id"]},
            headers=key,
        )
        assert by_range.json() == {"events": 2, "deliveries": 2}
        replayed = hook.wait_for(5)[3:]
        assert [r.headers["webhook-id"] for r in replayed] == ids

    assert client.post("/v1/events/replay", json={}, headers=key).status_code == 422
    naive = client.post("/v1/events/replay", json={"from": "2026-01-01T00:00:00"}, headers=key)
    assert naive.status_code == 422


def test_test_send_reports_the_answer_and_is_logged(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver([500]) as hook:
        endpoint = register(client, key, hook.url)
        failed = client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=key).json()
        ok = client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=key).json()
        requests = hook.requests
    assert (failed["success"], failed["status_code"], failed["error"]) == (False, 500, "HTTP 500")
    assert (ok["success"], ok["status_code"]) == (True, 200)
    assert requests[1].event["type"] == "sealpost.webhook.test"
    Webhook(endpoint["secret"]).verify(requests[1].body, requests[1].headers)
    log = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=key).json()["items"]
    assert sorted((d["kind"], d["state"]) for d in log) == [
        ("test", "delivered"),
        ("test", "failed"),
    ]


def test_unreachable_endpoint_is_an_attempt_with_a_clear_error(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    with WebhookReceiver() as hook:
        url = hook.url
    endpoint = register(client, key, url)  # nothing listens there any more
    result = client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=key).json()
    assert result["success"] is False
    assert result["status_code"] is None
    assert "Cannot connect" in result["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_private_destinations_are_refused_before_any_connection(host: str) -> None:
    """Without SEALPOST_WEBHOOK_ALLOW_PRIVATE_NETWORKS no request leaves for a loopback,
    private or link-local address, named or literal (checked on the resolved address)."""
    import asyncio

    from sealpost.config import Settings
    from sealpost.events.webhooks.sender import http_session, post_event

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.webhook_allow_private_networks is False
    with WebhookReceiver() as hook:
        port = hook.url.split(":")[2].split("/")[0]

        async def send() -> Any:
            async with http_session(settings) as session:
                return await post_event(
                    session,
                    f"http://{host}:{port}/hooks",
                    "e1",
                    "{}",
                    ["whsec_" + "A" * 43 + "="],
                    allow_private=False,
                )

        result = asyncio.run(send())
        assert result.status_code is None
        assert result.error.startswith("refused:") and "not a public address" in result.error
        assert hook.requests == []
