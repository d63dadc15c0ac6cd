"""A deadline rule on a certified email: the term starts when the recipient's server accepts
the message (RelayToNonERDS), is sealed as DeadlineSet, shown in the API and the certificate,
then approaches and passes on a frozen clock, each time as evidence and an event."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.deadlines.calendars import calendar_for
from sealpost.deadlines.rules import zone_for
from sealpost.deadlines.tasks import run_once
from sealpost.events.tables import outbox_events
from sealpost.ledger.repository import as_utc
from tests.certificates.support import poppler
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit

RULE = {"amount": 10, "unit": "business_days", "starts_from": "delivery", "calendar": "es-ct"}


def _send(client: TestClient, key: dict[str, str], local: str, **extra: Any) -> Any:
    body = {
        "from": "care@acme.test",
        "to": [f"{local}@{RECIPIENT_DOMAIN}"],
        "subject": "Resolution of your complaint",
        "text": "You may appeal within ten business days.",
        **extra,
    }
    return client.post("/v1/communications", json=body, headers=key)


def _follow(env: MailEnv) -> int:
    """One round of the events dispatcher (positions) and of the deadlines loop."""
    dispatcher = env.sp.dispatcher
    assert dispatcher.hold_lease()
    dispatcher.position()
    return run_once(env.sp.deadlines)


def _records(env: MailEnv, cid: str, event: str) -> list[dict[str, Any]]:
    return [
        e.record for e in env.sp.communications.timeline(env.tenant_id, cid) if e.event == event
    ]


def _event_types(env: MailEnv, cid: str) -> list[str]:
    o = outbox_events.c
    with env.sp.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.type)
                .where(o.subject_id == cid, o.type.like("sealpost.deadline.%"))
                .order_by(o.seq)
            ).scalars()
        )


def test_a_term_from_delivery_is_sealed_shown_and_clocked(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], tmp_path: Path
) -> None:
    sent = _send(mail_client, mail_key, "ana", deadline=RULE)
    assert sent.status_code == 201, sent.text
    cid = sent.json()["communications"][0]["id"]
    accepted = _records(mail_env, cid, "SubmissionAcceptance")[0]
    assert accepted["details"]["deadline"] == {**RULE, "calendar": "ES-CT", "variant": "es_art30"}
    waiting = mail_client.get(f"/v1/communications/{cid}", headers=mail_key).json()
    assert waiting["deadlines"][0]["status"] in ("waiting", "running")
    mail_env.wait_status(cid, "delivered")
    _follow(mail_env)

    relay = _records(mail_env, cid, "RelayToNonERDS")[0]
    delivered_at = as_utc(
        next(
            e.event_time
            for e in mail_env.sp.communications.timeline(mail_env.tenant_id, cid)
            if e.event == "RelayToNonERDS"
        )
    )
    local_day = delivered_at.astimezone(zone_for("ES-CT")).date()
    expected = calendar_for("ES-CT").add_business_days(local_day, 10)
    [sealed] = _records(mail_env, cid, "DeadlineSet")
    assert sealed["event"]["uri"] == "urn:sealpost:event:DeadlineSet"
    term = sealed["details"]["deadline"]
    assert term["ends_on"] == expected.isoformat()
    assert term["calendar_name"] == "ES-CT"
    assert term["data_version"].startswith("holidays 0.")
    assert term["rule"]["starts_from"] == "delivery"
    assert sealed["details"]["trigger_record_id"] == relay["id"]
    assert sealed["details"]["trigger_event"] == "RelayToNonERDS"

    detail = mail_client.get(f"/v1/communications/{cid}", headers=mail_key).json()
    [shown] = detail["deadlines"]
    assert shown["status"] == "running"
    assert shown["ends_on"] == expected.isoformat()
    assert shown["calendar_name"] == "ES-CT" and shown["data_version"] == term["data_version"]
    assert shown["text"].startswith("The 10-business-day term in ES-CT (holidays ")
    assert shown["record_id"] == sealed["id"]

    # following again (a restart, a second worker) starts nothing twice
    _follow(mail_env)
    assert len(_records(mail_env, cid, "DeadlineSet")) == 1

    # the certificate states the computed term, as a computation (a new version once the
    # DeadlineSet record is sealed)
    text = _wait_certificate_text(mail_env, mail_client, mail_key, cid, tmp_path, "term in ES-CT")
    assert (
        f"The 10-business-day term in ES-CT ({term['data_version']}; Ley 39/2015 art. 30)" in text
    )
    assert "a calculation by Sealpost, not an event" in text

    # the clock, frozen: two business days before the last day, then after it
    deadline = mail_env.sp.deadlines.repo.for_subject(mail_env.tenant_id, "communication", cid)[0]
    lead_day = calendar_for("ES-CT").business_days_before(expected, 2)
    assert deadline.approaching_at.astimezone(zone_for("ES-CT")).date() == lead_day
    mail_env.sp.clock = lambda: deadline.approaching_at - timedelta(seconds=1)
    _follow(mail_env)
    assert _event_types(mail_env, cid) == []
    mail_env.sp.clock = lambda: deadline.approaching_at + timedelta(seconds=1)
    _follow(mail_env)
    _follow(mail_env)
    assert _event_types(mail_env, cid) == ["sealpost.deadline.approaching"]
    [approaching] = _records(mail_env, cid, "DeadlineApproaching")
    assert approaching["details"]["ends_on"] == expected.isoformat()
    mail_env.sp.clock = lambda: deadline.ends_at
    _follow(mail_env)
    assert _event_types(mail_env, cid) == ["sealpost.deadline.approaching"]  # last ms of the day
    mail_env.sp.clock = lambda: deadline.ends_at + timedelta(milliseconds=1)
    _follow(mail_env)
    _follow(mail_env)
    assert _event_types(mail_env, cid) == [
        "sealpost.deadline.approaching",
        "sealpost.deadline.passed",
    ]
    assert len(_records(mail_env, cid, "DeadlinePassed")) == 1
    passed = mail_client.get(f"/v1/communications/{cid}", headers=mail_key).json()
    assert passed["deadlines"][0]["status"] == "passed"
    events = mail_client.get("/v1/events?type=sealpost.deadline.passed", headers=mail_key).json()
    found = [e for e in events["events"] if e["type"] == "sealpost.deadline.passed"]
    assert found and found[0]["subject"] == f"communications/{cid}"
    assert found[0]["data"]["ends_on"] == expected.isoformat()


def _wait_certificate_text(
    env: MailEnv, client: TestClient, key: dict[str, str], cid: str, tmp_path: Path, needle: str
) -> str:
    deadline = time.monotonic() + 40
    text = ""
    while time.monotonic() < deadline:
        response = client.get(f"/v1/communications/{cid}/certificate.pdf", headers=key)
        if response.status_code == 200:
            path = tmp_path / "certificate.pdf"
            path.write_bytes(response.content)
            text = " ".join(poppler("pdftotext", path, "-").stdout.split())
            if needle in text:
                return text
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} in the certificate: {text[-2000:]}")


@pytest.mark.parametrize(
    ("rule", "extra", "message"),
    [
        ({**RULE, "calendar": "ES-ZZ"}, {}, "unknown_calendar"),
        ({**RULE, "starts_from": "handover"}, {"delivery": "direct"}, "needs delivery: pickup"),
        ({**RULE, "starts_from": "delivery"}, {"delivery": "pickup"}, "delivery is for direct"),
        ({**RULE, "unit": "weeks"}, {}, "invalid_input"),
        ({**RULE, "amount": 0}, {}, "invalid_input"),
    ],
)
def test_a_bad_rule_refuses_the_send_and_nothing_is_accepted(
    mail_env: MailEnv,
    mail_client: TestClient,
    mail_key: dict[str, str],
    rule: dict[str, Any],
    extra: dict[str, Any],
    message: str,
) -> None:
    before = mail_env.sp.communications.search(mail_env.tenant_id, limit=10)
    response = _send(mail_client, mail_key, "bad", deadline=rule, **extra)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert mail_env.sp.communications.search(mail_env.tenant_id, limit=10) == before


def _with_header(value: str, subject: str) -> bytes:
    raw = make_message(subject)
    return f"Sealpost-Deadline: {value}\r\n".encode() + raw


def test_an_smtp_submission_carries_its_rule_in_a_header(mail_env: MailEnv) -> None:
    code, _ = submit(
        mail_env,
        _with_header("15 natural_days from delivery on es-md", "Deadline by header"),
        [f"luis@{RECIPIENT_DOMAIN}"],
    )
    assert code == 250
    [cid] = [
        c.id
        for c in mail_env.sp.communications.search(mail_env.tenant_id, limit=10)
        if c.subject == "Deadline by header"
    ]
    accepted = _records(mail_env, cid, "SubmissionAcceptance")[0]
    assert accepted["details"]["deadline"] == {
        "amount": 15,
        "unit": "natural_days",
        "starts_from": "delivery",
        "calendar": "ES-MD",
        "variant": "es_art30",
    }
    mail_env.wait_status(cid, "delivered")
    _follow(mail_env)
    [sealed] = _records(mail_env, cid, "DeadlineSet")
    assert sealed["details"]["deadline"]["calendar_name"] == "ES-MD"


@pytest.mark.parametrize(
    ("value", "reply"),
    [
        ("ten days from delivery on ES", "write it as"),
        ("10 business_days from delivery on ES-ZZ", "ES-ZZ"),
        ("10 business_days from handover on ES", "needs delivery: pickup"),
    ],
)
def test_a_bad_deadline_header_is_refused_for_good(
    mail_env: MailEnv, value: str, reply: str
) -> None:
    code, message = submit(
        mail_env, _with_header(value, "Bad deadline"), [f"luis@{RECIPIENT_DOMAIN}"]
    )
    assert code == 550
    assert reply in " ".join(message.decode().split())
    assert not [
        c
        for c in mail_env.sp.communications.search(mail_env.tenant_id, limit=10)
        if c.subject == "Bad deadline"
    ]
