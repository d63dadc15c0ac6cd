"""Terms on a registered pickup: from the acceptance (ConsignmentAcceptance) or from the
handover (ContentHandover), through the real pickup page and a real recipient server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sealpost.deadlines.calendars import calendar_for
from sealpost.deadlines.rules import zone_for
from sealpost.deadlines.tasks import run_once
from tests.pickup.flow import (
    Recipient,
    code_in,
    link_in,
    notify,
    pickup_request,
    records_of,
    token_of,
    wait_mail,
)
from tests.support.mail import MailEnv


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {"certificates_enabled": False, "pickup_worker_enabled": False}


def _follow(env: MailEnv) -> None:
    assert env.sp.dispatcher.hold_lease()
    env.sp.dispatcher.position()
    run_once(env.sp.deadlines)


def _send(client: TestClient, key: dict[str, str], local: str, rule: dict[str, Any]) -> str:
    body = {**pickup_request(local), "deadline": rule}
    response = client.post("/v1/communications", json=body, headers=key)
    assert response.status_code == 201, response.text
    cid: str = response.json()["communications"][0]["id"]
    return cid


def _accept(env: MailEnv, client: TestClient, local: str) -> Recipient:
    notify(env)
    recipient = Recipient(client)
    recipient.open(token_of(link_in(wait_mail(env, local, "certified message is waiting"))))
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(env, local, "Su código"))
    assert recipient.call("POST", "/identify", {"answer": code}).status_code == 200
    assert recipient.call("POST", "/accept").status_code == 200
    return recipient


@pytest.mark.parametrize(
    ("starts_from", "trigger"),
    [("acceptance", "ConsignmentAcceptance"), ("handover", "ContentHandover")],
)
def test_a_pickup_term_starts_from_its_trigger_record(
    mail_env: MailEnv,
    mail_client: TestClient,
    mail_key: dict[str, str],
    starts_from: str,
    trigger: str,
) -> None:
    rule = {"amount": 15, "unit": "natural_days", "starts_from": starts_from, "calendar": "ES-MD"}
    cid = _send(mail_client, mail_key, "eva", rule)
    _follow(mail_env)
    assert records_of(mail_env, cid, "DeadlineSet") == []  # notice sent: no trigger yet
    recipient = _accept(mail_env, mail_client, "eva")
    assert recipient.call("GET", "/content").status_code == 200  # handed over
    _follow(mail_env)
    [sealed] = records_of(mail_env, cid, "DeadlineSet")
    [trigger_record] = records_of(mail_env, cid, trigger)
    assert sealed["details"]["trigger_record_id"] == trigger_record["id"]
    assert sealed["details"]["trigger_event"] == trigger
    term = sealed["details"]["deadline"]
    entry = next(
        e
        for e in mail_env.sp.communications.timeline(mail_env.tenant_id, cid)
        if e.event == trigger
    )
    day = entry.event_time.astimezone(zone_for("ES-MD")).date()
    expected = calendar_for("ES-MD").next_business_day(day + timedelta(days=15))
    assert term["ends_on"] == expected.isoformat()
    assert term["calendar_name"] == "ES-MD"
    words = "the acceptance" if starts_from == "acceptance" else "the handover"
    assert "The 15-natural-day term in ES-MD (holidays " in term["text"]
    assert f"counted from {words} on " in term["text"]
    detail = mail_client.get(f"/v1/communications/{cid}", headers=mail_key).json()
    assert [d["status"] for d in detail["deadlines"]] == ["running"]
