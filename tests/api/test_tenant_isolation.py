"""One tenant never reaches another's objects, on every route that names one.

The walk is driven by the OpenAPI document, so a new route with a path parameter fails here
until this test knows how to give it another tenant's object (docs/security.md, "tenant
crossing").  Every attempt must answer 404 problem+json that names nothing of the owner, and
the owner's objects must be unchanged afterwards (a refused PATCH, DELETE, cancel or
secret rotation did nothing).
"""

from __future__ import annotations

import smtplib
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.signatures.flow import process_request, signer
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv
from tests.support.webhook_receiver import WebhookReceiver

# the ledger's tree heads are one public log shared by every tenant: not an object of one
# the log's heads and its public hash tiles hold no tenant data (docs/evidence-format.md)
SHARED = {"/v1/ledger/heads/{tree_size}", "/log/tile/{tile}"}
# a region's calendar is no object: each tenant reads and writes its own days on any code
# (checked below: the intruder sees none of the owner's days and changes none of them)
PER_TENANT = {"/v1/calendars/{code}", "/v1/calendars/{code}/days"}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/webhooks/{endpoint_id}"): {"description": "taken over", "enabled": False},
    ("post", "/v1/signatures/{process_id}/cancel"): {"reason": "taken over"},
    ("post", "/v1/sequences/{sequence_id}/preview"): {"language": "en"},
    ("post", "/v1/sequences/{sequence_id}/enrolments"): {"person": {"name": "Intruder"}},
    ("post", "/v1/archive/threads/{thread_id}/assign"): {"reason": "taken over"},
    ("patch", "/v1/archive/agents/{agent_id}"): {"disabled": True},
    ("put", "/v1/archive/teams/{team_id}/members"): {"agent_ids": []},
    ("patch", "/v1/archive/mailboxes/{mailbox_id}"): {"enabled": False, "secret": "taken-over"},
    ("put", "/v1/archive/sla-policies/{policy_id}"): {
        "name": "taken over",
        "first_reply_minutes": 1,
        "reply_minutes": 1,
        "time_zone": "UTC",
        "hours": {"mon": [["09:00", "10:00"]]},
    },
    ("post", "/v1/archive/holds/{hold_id}/release"): {"reason": "taken over"},
}


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {
        "webhook_allow_private_networks": True,
        "webhook_timeout_seconds": 1.0,
        "archive_imap_allow_private_networks": True,
    }


def _owned_objects(client: TestClient, key: dict[str, str], env: MailEnv) -> dict[str, str]:
    """One object of each kind, owned by ``key``'s tenant, by path parameter name."""
    sent = client.post(
        "/v1/communications",
        json={
            "from": "care@acme.test",
            "to": [f"ann@{RECIPIENT_DOMAIN}"],
            "subject": "Owner-only subject",
            "text": "Owner-only body.",
            "capture_replies": True,
        },
        headers=key,
    )
    assert sent.status_code == 201, sent.text
    communication_id = sent.json()["communications"][0]["id"]
    env.wait_status(communication_id, "delivered")
    with smtplib.SMTP("127.0.0.1", env.sp.smtp_ports["inbound"], timeout=10) as inbound:
        inbound.sendmail(
            f"ann@{RECIPIENT_DOMAIN}",
            [env.sp.reply_addresses.address(communication_id)],
            f"From: ann@{RECIPIENT_DOMAIN}\r\nSubject: Re: owner\r\n\r\nOwner-only reply\r\n",
        )
    replies = client.get(f"/v1/communications/{communication_id}/replies", headers=key).json()
    detail = client.get(f"/v1/communications/{communication_id}", headers=key).json()
    record_id = detail["timeline"][0]["record"]["id"]

    with WebhookReceiver() as hook:
        endpoint = client.post(
            "/v1/webhooks", json={"url": hook.url, "description": "owner hook"}, headers=key
        )
        assert endpoint.status_code == 201, endpoint.text
        endpoint_id = endpoint.json()["id"]
        assert client.post(f"/v1/webhooks/{endpoint_id}/test", headers=key).status_code == 200
    deliveries = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=key).json()
    delivery_id = deliveries["items"][0]["id"]

    process = client.post(
        "/v1/signatures", json=process_request(signer("Ann Owner", "ann")), headers=key
    )
    assert process.status_code == 201, process.text
    env.sp.start_events()  # positions the events, so that the pull API lists them
    deadline = time.monotonic() + 20
    while not (events := client.get("/v1/events", headers=key).json()["events"]):
        assert time.monotonic() < deadline, "no event was positioned"
        time.sleep(0.05)
    sms = client.post("/v1/sms", json={"to": "+34612345678", "text": "Owner-only"}, headers=key)
    assert sms.status_code == 201, sms.text
    sequence = client.post(
        "/v1/sequences",
        json={
            "name": "Owner-only sequence",
            "sender": {"email": "care@acme.test"},
            "steps": [
                {
                    "channel": "email",
                    "template": {
                        "fallback_language": "en",
                        "languages": {"en": {"subject": "Owner-only", "text": "Hello {{ name }}"}},
                    },
                    "delay": {"amount": 1, "unit": "hours"},
                }
            ],
        },
        headers=key,
    )
    assert sequence.status_code == 201, sequence.text
    enrolment = client.post(
        f"/v1/sequences/{sequence.json()['id']}/enrolments",
        json={"person": {"name": "Ann Owner", "email": f"ann@{RECIPIENT_DOMAIN}"}},
        headers=key,
    )
    assert enrolment.status_code == 201, enrolment.text
    archived = client.post(
        "/v1/archive/messages",
        content=b"From: Ann Owner <ann@customer.test>\r\nTo: care@acme.test\r\n"
        b"Subject: Owner-only archived\r\n\r\nOwner-only text\r\n",
        headers={**key, "Content-Type": "message/rfc822"},
    )
    assert archived.status_code == 201, archived.text
    agent = client.post(
        "/v1/archive/agents",
        json={"email": "owner-agent@acme.test", "name": "Ann Owner", "role": "agent"},
        headers=key,
    )
    assert agent.status_code == 201, agent.text
    team = client.post(
        "/v1/archive/teams",
        json={"name": "Owner-only team", "agent_ids": [agent.json()["id"]]},
        headers=key,
    )
    assert team.status_code == 201, team.text
    mailbox = client.post(
        "/v1/archive/mailboxes",
        json={
            "name": "Owner-only mailbox",
            "host": "127.0.0.1",
            "port": 9,
            "tls": "none",
            "username": "Ann Owner",
            "secret": "Owner-only password",
        },
        headers=key,
    )
    assert mailbox.status_code == 201, mailbox.text
    sla_policy = client.post(
        "/v1/archive/sla-policies",
        json={
            "name": "Owner-only SLA",
            "first_reply_minutes": 480,
            "reply_minutes": 1440,
            "time_zone": "Europe/Madrid",
            "calendar": "ES",
            "hours": {"mon": [["09:00", "14:00"], ["15:00", "18:00"]]},
        },
        headers=key,
    )
    assert sla_policy.status_code == 201, sla_policy.text
    scheduled = client.post(
        "/v1/archive/scheduled-sends",
        json={
            "sender": "care@acme.test",
            "to": f"ann@{RECIPIENT_DOMAIN}",
            "subject": "Owner-only later",
            "text": "Owner-only text",
            "hold_until_working_hours": {"time_zone": "Europe/Madrid", "calendar": "ES"},
        },
        headers=key,
    )
    assert scheduled.status_code == 201, scheduled.text
    thread_id = archived.json()["message"]["thread_id"]
    hold = client.post(
        "/v1/archive/holds",
        json={"kind": "thread", "thread_id": thread_id, "reason": "Owner-only case"},
        headers=key,
    )
    assert hold.status_code == 201, hold.text
    export = client.post("/v1/archive/exports", json={"thread_id": thread_id}, headers=key)
    assert export.status_code == 201, export.text
    return {
        "mailbox_id": mailbox.json()["id"],
        "send_id": scheduled.json()["id"],
        "policy_id": sla_policy.json()["id"],
        "hold_id": hold.json()["id"],
        "export_id": export.json()["id"],
        "message_id": archived.json()["message"]["id"],
        "thread_id": archived.json()["message"]["thread_id"],
        "agent_id": agent.json()["id"],
        "team_id": team.json()["id"],
        "sequence_id": sequence.json()["id"],
        "enrolment_id": enrolment.json()["id"],
        "sms_id": sms.json()["id"],
        "communication_id": communication_id,
        "reply_id": replies["items"][0]["id"],
        "record_id": record_id,
        "endpoint_id": endpoint_id,
        "delivery_id": delivery_id,
        "process_id": process.json()["id"],
        "signer_id": process.json()["signers"][0]["id"],
        "event_id": events[0]["id"],
    }


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"this test does not know how to fill {path}"
    return path


def test_no_route_reaches_another_tenants_object(
    mail_client: TestClient, mail_key: dict[str, str], mail_env: MailEnv
) -> None:
    client, owner = mail_client, mail_key
    ids = _owned_objects(client, owner, mail_env)
    intruder_tenant = mail_env.sp.tenants.create("intruder")
    intruder = {
        "Authorization": "Bearer "
        + mail_env.sp.tenants.issue_api_key(intruder_tenant.id, "crm").secret
    }

    paths = client.get("/openapi.json").json()["paths"]
    walked = []
    for template, operations in paths.items():
        if "{" not in template or template in SHARED | PER_TENANT:
            continue
        url = _fill(template, ids)
        for method in operations:
            body = BODIES.get((method, template))
            response = client.request(method.upper(), url, json=body, headers=intruder)
            walked.append(f"{method.upper()} {template}")
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            assert response.headers["content-type"].startswith("application/problem+json")
            for secret in ("Owner-only", "owner hook", "Ann Owner", mail_env.tenant_id):
                assert secret not in response.text, f"{method} {url} leaks {secret!r}"
    assert len(walked) >= 18, walked  # every object route of the API, not a few

    days = {"days": [{"date": "2026-12-21", "name": "Owner-only festa", "kind": "holiday"}]}
    assert client.put("/v1/calendars/ES-CT/days", json=days, headers=owner).status_code == 200
    for url in ("/v1/calendars/ES-CT/days", "/v1/calendars/ES-CT?year=2026"):
        seen = client.get(url, headers=intruder)
        assert seen.status_code == 200 and "Owner-only" not in seen.text
    emptied = client.put("/v1/calendars/ES-CT/days", json={"days": []}, headers=intruder)
    assert emptied.status_code == 200
    kept = client.get("/v1/calendars/ES-CT/days", headers=owner).json()["days"]
    assert [d["name"] for d in kept] == ["Owner-only festa"]

    # the owner still reaches everything, unchanged by the refused writes
    for template in ("/v1/communications/{communication_id}", "/v1/evidence/{record_id}"):
        assert client.get(_fill(template, ids), headers=owner).status_code == 200
    hook = client.get(_fill("/v1/webhooks/{endpoint_id}", ids), headers=owner).json()
    assert (hook["description"], hook["enabled"]) == ("owner hook", True)
    process = client.get(_fill("/v1/signatures/{process_id}", ids), headers=owner).json()
    assert process["status"] != "cancelled"
    event = client.get(_fill("/v1/events/{event_id}", ids), headers=owner)
    assert event.status_code == 200
    delivery = client.get(
        _fill("/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}", ids), headers=owner
    )
    assert delivery.status_code == 200
    enrolment = client.get(_fill("/v1/sequences/enrolments/{enrolment_id}", ids), headers=owner)
    assert enrolment.json()["status"] == "active"  # the intruder's paid and cancel changed nothing
    agents = client.get("/v1/archive/agents", headers=owner).json()
    assert [a["disabled_at"] for a in agents] == [None]  # the intruder's PATCH disabled nobody
    teams = client.get("/v1/archive/teams", headers=owner).json()
    assert [len(t["agent_ids"]) for t in teams] == [1]
    mailboxes = client.get("/v1/archive/mailboxes", headers=owner).json()
    assert [m["enabled"] for m in mailboxes] == [True]  # the intruder's PATCH changed nothing
    policies = client.get("/v1/archive/sla-policies", headers=owner).json()
    assert [p["name"] for p in policies] == ["Owner-only SLA"]  # neither replaced nor deleted
    send = client.get(_fill("/v1/archive/scheduled-sends/{send_id}", ids), headers=owner).json()
    assert send["state"] in ("scheduled", "sent")  # the intruder's cancel cancelled nothing
    hold = client.get(_fill("/v1/archive/holds/{hold_id}", ids), headers=owner).json()
    assert hold["active"] is True  # the intruder's release released nothing
