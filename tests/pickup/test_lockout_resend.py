"""A lockout is evidence, and the sender can recover it: five wrong codes or answers write
NotificationForAcceptanceFailure (reason ``identification_failed``) once, and the sender's
``POST /v1/communications/{id}/pickup/resend`` sends a new notice whose link lets the recipient
try again; refused once the pickup is final."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.events.tables import outbox_events
from tests.pickup.flow import (
    Recipient,
    code_in,
    link_in,
    notify,
    records_of,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import MailEnv

NOTICE = "certified message is waiting"
AGENT = "Mozilla/5.0 Mobile"


def _open(env: MailEnv, client: TestClient, local: str, count: int = 1) -> Recipient:
    recipient = Recipient(client)
    recipient.open(token_of(link_in(wait_mail(env, local, NOTICE, count=count))))
    return recipient


def _pickup(client: TestClient, key: dict[str, str], cid: str) -> dict[str, object]:
    found: dict[str, object] = client.get(f"/v1/communications/{cid}", headers=key).json()["pickup"]
    return found


def test_five_wrong_codes_are_evidence_and_a_resend_lets_the_recipient_in(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "lou")
    notify(mail_env)
    first_link = link_in(wait_mail(mail_env, "lou", NOTICE))
    locked = _open(mail_env, client, "lou")
    assert locked.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(mail_env, "lou", "Su código"))
    wrong = "111111" if code != "111111" else "222222"
    statuses = [locked.call("POST", "/identify", {"answer": wrong}).status_code for _ in range(5)]
    assert statuses == [422, 422, 422, 422, 423]
    assert locked.call("POST", "/identify", {"answer": code}).status_code == 423
    failures = records_of(mail_env, cid, "NotificationForAcceptanceFailure")
    assert len(failures) == 1  # the locking try only, not the refused ones after it
    failure = failures[0]
    assert failure["event"]["uri"].endswith("/Event/NotificationForAcceptanceFailure")
    assert [r["code"] for r in failure["reasons"]] == ["identification_failed"]
    assert failure["details"]["identification_failed"] == {"method": "email_otp", "attempts": 5}
    assert failure["details"]["visitor"]["user_agent"] == AGENT
    assert failure["details"]["visitor"]["ip"]
    assert _pickup(client, key, cid)["locked_out"] is True
    with mail_env.sp.engine.connect() as conn:
        told = [
            json.loads(row.payload)
            for row in conn.execute(
                select(outbox_events).where(
                    outbox_events.c.type == "sealpost.communication.identification_failed"
                )
            )
        ]
    assert len(told) == 1  # the sender's webhook hears of it
    assert told[0]["data"]["identification_failed"] == {"method": "email_otp", "attempts": 5}
    assert told[0]["data"]["communication_id"] == cid

    resent = client.post(f"/v1/communications/{cid}/pickup/resend", headers=key)
    assert resent.status_code == 200, resent.text
    assert resent.json()["notices_sent"] == 2
    assert _pickup(client, key, cid)["locked_out"] is False
    new_link = link_in(wait_mail(mail_env, "lou", NOTICE, count=2))
    assert new_link != first_link
    notice = records_of(mail_env, cid, "ConsignmentNotification")[-1]
    assert notice["details"]["reason"] == "resent"
    assert notice["details"]["notice_communication_id"] == resent.json()["notice_communication_id"]
    resent_notice = resent.json()["notice_communication_id"]
    withheld = client.get(f"/v1/communications/{resent_notice}/original.eml", headers=key)
    assert withheld.status_code == 403  # the fresh link is not the sender's to read
    assert withheld.json()["type"] == "urn:sealpost:problem:access_secret_withheld"
    assert locked.call("GET", "/state").status_code == 410  # the old page is closed

    again = _open(mail_env, client, "lou", count=2)
    assert again.call("POST", "/code").status_code == 200
    fresh = code_in(wait_mail(mail_env, "lou", "Su código", count=2))
    assert again.call("POST", "/identify", {"answer": fresh}).status_code == 200
    assert again.call("POST", "/accept").status_code == 200
    assert len(records_of(mail_env, cid, "ConsignmentNotification")) == 2


def test_a_challenge_lockout_is_recorded_and_a_resend_counts_answers_again(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(
        client,
        key,
        "max",
        identification="challenge",
        consent="basic",
        challenge_question="Your customer number?",
        challenge_answer="C-99 812",
    )
    notify(mail_env)
    recipient = _open(mail_env, client, "max")
    statuses = [
        recipient.call("POST", "/identify", {"answer": f"wrong {n}"}).status_code for n in range(6)
    ]
    assert statuses == [422, 422, 422, 422, 423, 423]
    failure = records_of(mail_env, cid, "NotificationForAcceptanceFailure")
    assert len(failure) == 1
    assert failure[0]["details"]["identification_failed"]["method"] == "challenge"
    assert client.post(f"/v1/communications/{cid}/pickup/resend", headers=key).status_code == 200
    again = _open(mail_env, client, "max", count=2)
    assert again.call("POST", "/identify", {"answer": "c-99 812"}).status_code == 200
    assert again.call("GET", "/content").status_code == 200


def test_resend_is_refused_before_the_first_notice_and_for_an_unknown_pickup(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "ned")
    early = client.post(f"/v1/communications/{cid}/pickup/resend", headers=key)
    assert early.status_code == 409 and "new" in early.json()["detail"]
    unknown = client.post(
        "/v1/communications/00000000-0000-0000-0000-000000000000/pickup/resend", headers=key
    )
    assert unknown.status_code == 404
    assert client.post(f"/v1/communications/{cid}/pickup/resend").status_code == 401
