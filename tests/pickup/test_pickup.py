"""Registered pickup, step by step through the API and the page's JSON API, against a real
recipient SMTP server: the content is never relayed, the notice holds no content, each step
is the ETSI EN 319 522-3 record it should be, and final states exclude each other."""

from __future__ import annotations

import re
import smtplib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.errors import ServiceUnavailable
from sealpost.events.tables import outbox_events
from sealpost.pickup.ports import OutgoingSms
from sealpost.pickup.tables import pickups
from tests.certificates.support import poppler
from tests.pickup.flow import (
    ATTACHMENT,
    SECRET_TEXT,
    Recipient,
    code_in,
    events_of,
    link_in,
    mails_to,
    notify,
    records_of,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message

NOTICE = "certified message is waiting"


def _opened(env: MailEnv, client: TestClient, key: dict[str, str], local: str, **pickup: object):
    cid = send_pickup(client, key, local, **pickup)
    notify(env)
    link = link_in(wait_mail(env, local, NOTICE))
    recipient = Recipient(client)
    view = recipient.open(token_of(link))
    return cid, recipient, view


def _identify_by_email(env: MailEnv, recipient: Recipient, local: str) -> None:
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(env, local, "Su código"))
    answer = recipient.call("POST", "/identify", {"answer": code})
    assert answer.status_code == 200, answer.text


def test_pickup_holds_the_content_and_sends_a_notice_without_it(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "ana", policy="fr")
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert detail["status"] == "pickup"
    assert detail["pickup"]["state"] == "new"
    accepted = records_of(mail_env, cid, "SubmissionAcceptance")[0]
    assert accepted["details"]["delivery"]["consignment"].endswith("/consignment/consent")
    notify(mail_env)
    notice = wait_mail(mail_env, "ana", NOTICE)
    assert SECRET_TEXT not in notice and "Claim 4711" not in notice
    assert "claims@acme.test" not in notice  # fr: the sender is hidden
    assert "/pickup/" in notice
    assert all(SECRET_TEXT not in m for m in mails_to(mail_env, "ana"))
    sent = records_of(mail_env, cid, "ConsignmentNotification")[0]
    assert sent["event"]["uri"] == "http://uri.etsi.org/19522/Event/ConsignmentNotification"
    assert sent["details"]["sender_shown"] is False
    # the notice's own delivery, once recorded, is NotificationDelivered
    notice_id = sent["details"]["notice_communication_id"]
    mail_env.wait_status(notice_id, "delivered")
    notify(mail_env)
    assert "NotificationDelivered" in events_of(mail_env, cid)
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert detail["pickup"]["notice"]["status"] == "delivered"
    assert detail["pickup"]["state"] == "notified"
    assert detail["status"] == "pickup"  # never relayed: the delivery worker never took it


def test_the_page_fetch_does_not_spend_the_link(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "scan")
    notify(mail_env)
    link = link_in(wait_mail(mail_env, "scan", NOTICE))
    path = "/pickup/" + token_of(link)
    for _ in range(3):  # a mail scanner's GETs
        page = client.get(path)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "NotificationAccessTracking" not in events_of(mail_env, cid)
    Recipient(client).open(token_of(link))
    tracked = records_of(mail_env, cid, "NotificationAccessTracking")
    assert len(tracked) == 1
    assert tracked[0]["details"]["visitor"]["user_agent"].startswith("Mozilla/5.0 (Android")
    assert client.get(path).status_code == 410  # spent now
    again = client.post("/pickup/api/open", json={"link": token_of(link)})
    assert again.status_code == 410


def test_wrong_then_right_code_accept_read_and_download(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid, recipient, view = _opened(mail_env, client, key, "bea")
    assert view["identified"] is False and view["sender"] == "claims@acme.test"
    assert recipient.call("GET", "/content").status_code == 403  # not identified
    assert recipient.call("POST", "/code").json()["sent_to"] == f"b***@{RECIPIENT_DOMAIN}"
    code = code_in(wait_mail(mail_env, "bea", "Su código"))
    wrong = recipient.call("POST", "/identify", {"answer": "000000" if code != "000000" else "1"})
    assert wrong.status_code == 422 and "4 tries left" in wrong.json()["detail"]
    right = recipient.call("POST", "/identify", {"answer": code})
    assert right.status_code == 200 and right.json()["identified"] is True
    offered = records_of(mail_env, cid, "NotificationForAcceptance")
    assert offered[0]["details"]["identification"]["method"] == "email_otp"
    assert recipient.call("GET", "/content").status_code == 409  # accept first
    accepted = recipient.call("POST", "/accept")
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    message = recipient.call("GET", "/content").json()
    assert message["text"].strip() == SECRET_TEXT
    assert [a["filename"] for a in message["attachments"]] == ["decision.pdf"]
    download = recipient.call("GET", "/download/0")
    assert download.content == ATTACHMENT
    eml = recipient.call("GET", "/download/eml")
    assert eml.headers["content-type"].startswith("message/rfc822")
    for odd in ("%C2%B2", "99", "-1"):  # a superscript two is a digit to str.isdigit
        assert recipient.call("GET", f"/download/{odd}").status_code == 404
    events = events_of(mail_env, cid)
    assert events.count("ConsignmentAcceptance") == 1
    assert events.count("ContentHandover") == 1
    assert events.count("ContentAccessTracking") == 2
    assert (
        records_of(mail_env, cid, "ContentAccessTracking")[0]["details"]["download"]["filename"]
        == "decision.pdf"
    )
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert detail["status"] == "accepted"
    assert [s["step"] for s in detail["pickup"]["steps"]] == [
        "notified",
        "opened",
        "identified",
        "offered",
        "accepted",
        "handed_over",
    ]
    with mail_env.sp.engine.connect() as conn:
        kinds = set(conn.execute(select(outbox_events.c.type)).scalars())
    assert {
        "sealpost.communication.notice_sent",
        "sealpost.communication.notice_opened",
        "sealpost.communication.offered",
        "sealpost.communication.accepted_by_recipient",
        "sealpost.communication.handed_over",
        "sealpost.communication.content_downloaded",
    } <= kinds
    assert recipient.call("POST", "/reject", {"reason": "late"}).status_code == 409


def test_reject_with_a_reason_hands_nothing_over(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid, recipient, _ = _opened(mail_env, client, key, "carl")
    assert recipient.call("POST", "/reject", {"reason": "x"}).status_code == 403
    _identify_by_email(mail_env, recipient, "carl")
    rejected = recipient.call("POST", "/reject", {"reason": "Not my claim"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    record = records_of(mail_env, cid, "ConsignmentRejection")[0]
    assert record["reasons"] == [{"code": "rejected_by_recipient", "text": "Not my claim"}]
    assert record["details"]["visitor"]["ip"]
    assert recipient.call("GET", "/content").status_code == 409
    assert recipient.call("POST", "/accept").status_code == 409
    assert "ContentHandover" not in events_of(mail_env, cid)
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["status"] == "rejected"


def test_five_wrong_codes_lock_the_recipient_out(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    _, recipient, _ = _opened(mail_env, client, key, "dan")
    recipient.call("POST", "/code")
    code = code_in(wait_mail(mail_env, "dan", "Su código"))
    wrong = "111111" if code != "111111" else "222222"
    statuses = [
        recipient.call("POST", "/identify", {"answer": wrong}).status_code for _ in range(5)
    ]
    assert statuses == [422, 422, 422, 422, 423]
    assert recipient.call("POST", "/identify", {"answer": code}).status_code == 423


def test_a_challenge_answer_is_kept_only_as_a_hash(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid, recipient, view = _opened(
        mail_env,
        client,
        key,
        "eva",
        identification="challenge",
        consent="basic",
        challenge_question="Your customer number?",
        challenge_answer="C-99 812",
    )
    assert view["question"] == "Your customer number?"
    with mail_env.sp.engine.connect() as conn:
        stored = conn.execute(pickups.select().where(pickups.c.communication_id == cid)).one()
    row_text = " ".join(str(v) for v in stored).casefold()
    assert "c-99" not in row_text and "c-99 812" not in row_text  # the answer, in no column
    assert stored.challenge_hash.startswith("scrypt$")
    assert recipient.call("POST", "/identify", {"answer": "C-99 813"}).status_code == 422
    assert recipient.call("POST", "/identify", {"answer": "  c-99   812 "}).status_code == 200
    message = recipient.call("GET", "/content")  # basic: no acceptance, handed over at once
    assert message.status_code == 200
    assert "ConsignmentAcceptance" not in events_of(mail_env, cid)
    handover = records_of(mail_env, cid, "ContentHandover")[0]
    assert handover["details"]["consignment"].endswith("/consignment/basic")
    assert handover["details"]["identification"]["method"] == "challenge"
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["status"] == "handed_over"


def test_choices_that_cannot_be_served_are_refused_with_the_field_named(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    from tests.pickup.flow import pickup_request

    sms = client.post(
        "/v1/communications",
        json=pickup_request("fay", identification="sms_otp", phone="+34600111222"),
        headers=key,
    )
    assert sms.status_code == 422 and "sms_otp" in sms.json()["detail"]
    challenge = client.post(
        "/v1/communications", json=pickup_request("fay", identification="challenge"), headers=key
    )
    assert challenge.status_code == 422 and "challenge_answer" in challenge.json()["detail"]
    bad = client.post("/v1/communications", json=pickup_request("fay", policy="xx"), headers=key)
    assert bad.status_code == 422
    assert mails_to(mail_env, "fay") == []
    listed = client.get("/v1/communications", headers=key).json()["items"]
    assert listed == []


def test_the_es_window_expires_as_deemed_rejected_and_excludes_acceptance(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid, recipient, _ = _opened(mail_env, client, key, "gil", policy="es")
    _identify_by_email(mail_env, recipient, "gil")
    pickup = mail_env.sp.pickup.repo.get(cid)
    assert pickup is not None and pickup.notified_at and pickup.expires_at
    madrid = ZoneInfo("Europe/Madrid")  # ten natural days, date to date on Madrid's clock
    wall = pickup.expires_at.astimezone(madrid).replace(
        tzinfo=None
    ) - pickup.notified_at.astimezone(madrid).replace(tzinfo=None)
    assert timedelta(days=10) <= wall < timedelta(days=10, seconds=1)  # rounded up to the second
    notify(mail_env, pickup.expires_at - timedelta(seconds=1))
    assert "AcceptanceRejectionExpiry" not in events_of(mail_env, cid)
    notify(mail_env, pickup.expires_at + timedelta(seconds=1))
    expiry = records_of(mail_env, cid, "AcceptanceRejectionExpiry")
    assert len(expiry) == 1 and "deemed rejected" in expiry[0]["reasons"][0]["text"]
    assert recipient.call("POST", "/accept").status_code == 409
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["status"] == "unclaimed"


def test_a_reminder_goes_before_the_window_closes(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "hal")
    notify(mail_env)
    pickup = mail_env.sp.pickup.repo.get(cid)
    assert pickup is not None and pickup.next_reminder_at and pickup.expires_at
    assert pickup.expires_at - pickup.next_reminder_at == timedelta(days=3)
    notify(mail_env, pickup.next_reminder_at + timedelta(seconds=1))
    notify(mail_env, pickup.next_reminder_at + timedelta(seconds=2))  # once only
    reminder = wait_mail(mail_env, "hal", "Reminder: a certified message")
    assert link_in(reminder) != link_in(wait_mail(mail_env, "hal", NOTICE))
    sent = records_of(mail_env, cid, "ConsignmentNotification")
    assert [r["details"]["reminder"] for r in sent] == [False, True]


def test_smtp_header_and_tenant_default_choose_pickup(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    raw = make_message("Your contract", to=f"ivo@{RECIPIENT_DOMAIN}")
    raw = b"Sealpost-Delivery: pickup\r\nSealpost-Pickup-Policy: es\r\n" + raw
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port) as smtp:
        smtp.starttls()
        smtp.login(mail_env.credential.username, mail_env.credential.password)
        smtp.sendmail("service@acme.test", [f"ivo@{RECIPIENT_DOMAIN}"], raw)
    listed = client.get("/v1/communications", headers=key).json()["items"]
    assert [c["status"] for c in listed] == ["pickup"]
    assert mail_env.sp.pickup.repo.get(listed[0]["id"]).policy == "es"  # type: ignore[union-attr]
    put = client.put("/v1/settings/pickup", json={"delivery": "pickup"}, headers=key)
    assert put.status_code == 200
    body = {"from": "claims@acme.test", "to": [f"joe@{RECIPIENT_DOMAIN}"], "text": "hi"}
    sent = client.post("/v1/communications", json=body, headers=key).json()
    assert sent["communications"][0]["status"] == "pickup"
    direct = client.post("/v1/communications", json={**body, "delivery": "direct"}, headers=key)
    assert direct.json()["communications"][0]["status"] == "queued"
    notify(mail_env)  # the notices themselves go direct, whatever the tenant's default
    notice = records_of(mail_env, sent["communications"][0]["id"], "ConsignmentNotification")
    notice_id = notice[0]["details"]["notice_communication_id"]
    assert mail_env.wait_status(notice_id, "delivered").status == "delivered"
    assert "certified message is waiting" in wait_mail(mail_env, "joe", NOTICE)


def test_the_page_language_follows_accept_language() -> None:
    from sealpost.pickup.page import language

    assert language("fr-FR,fr;q=0.9,es;q=0.8,en;q=0.5") == "es"
    assert language("es-ES") == "es"
    assert language("de-DE, en-GB;q=0.7") == "en"
    assert language(None) == "en"
    assert language("es;q=0.2, en;q=0.9") == "en"


def test_fr_window_counts_fifteen_days_from_the_day_after_the_notice() -> None:
    from sealpost.pickup.model import policy

    notice = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)  # 23:30 in Paris, 10 March
    closes = policy("fr").expires_at(notice, 15)
    assert closes == datetime(2026, 3, 25, 23, 0, tzinfo=UTC)  # 26 March 00:00 Paris (CET)
    assert policy("fr").hide_sender and not policy("es").hide_sender
    assert policy("es").expires_at(notice, 15) == notice + timedelta(days=10)
    assert policy("default").expires_at(notice, 7) == notice + timedelta(days=7)


@pytest.mark.parametrize("mail_overrides", [{"pickup_worker_enabled": False}])
def test_the_certificate_tells_the_pickup_story_in_plain_words(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    cid, recipient, _ = _opened(mail_env, client, key, "kim")
    _identify_by_email(mail_env, recipient, "kim")
    recipient.call("POST", "/accept")
    recipient.call("GET", "/content")
    mail_env.wait_certificate(cid, 1)
    pdf = client.get(f"/v1/communications/{cid}/certificate.pdf", headers=key).content
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    text = " ".join(poppler("pdftotext", path, "-").stdout.split())
    assert "the identified recipient accepted the message" in text
    assert "A notice was sent to the recipient (without the content)" in text
    assert "The link in the notice was opened in a browser" in text
    assert "The recipient accepted the message (identified by email_otp" in text
    assert SECRET_TEXT not in text


class RecordingSms:
    """The ``SmsSender`` port as the sms domain will offer it (built in parallel): here it
    only keeps what it was asked to send, so the pickup side of ``sms_otp`` is exercised."""

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    def send(self, sms: OutgoingSms) -> str:
        self.sent.append(sms)
        return f"sms-{len(self.sent)}"


def test_sms_otp_goes_through_the_sms_sender_when_one_is_configured(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    sms = RecordingSms()
    mail_env.sp.pickup.sms = sms  # what app.py wires once the sms domain is merged
    cid, recipient, view = _opened(
        mail_env, client, key, "lea", identification="sms_otp", phone="+34600111222"
    )
    assert view["identification"] == "sms_otp"
    sent = recipient.call("POST", "/code").json()
    assert sent["sent_to"] == "+34 6•• ••• •22"
    (message,) = sms.sent
    assert message.to == "+34600111222" and message.details["pickup_of"] == cid
    code = re.search(r"(\d{6})", message.text)
    assert code is not None
    assert recipient.call("POST", "/identify", {"answer": code.group(1)}).status_code == 200
    offered = records_of(mail_env, cid, "NotificationForAcceptance")[0]
    assert offered["details"]["identification"] == {
        "method": "sms_otp",
        "channel": "sms",
        "level": "low",
        "proves": "a code sent by SMS to +34600111222 was entered: control of that phone number",
    }
    assert message.access_secret  # the code: never shown to the tenant
    assert not any("Su código" in m for m in mails_to(mail_env, "lea"))


@pytest.mark.parametrize("replies", [["550 5.1.1 No such user here"]])
def test_a_notice_that_bounces_is_a_consignment_notification_failure(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "nobody")
    notify(mail_env)
    sent = records_of(mail_env, cid, "ConsignmentNotification")[0]
    mail_env.wait_status(sent["details"]["notice_communication_id"], "failed")
    notify(mail_env)
    notify(mail_env)  # once only
    failures = records_of(mail_env, cid, "ConsignmentNotificationFailure")
    assert len(failures) == 1
    assert failures[0]["reasons"][0]["code"] == "notice_not_delivered"
    assert "NotificationDelivered" not in events_of(mail_env, cid)
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert detail["pickup"]["notice"]["status"] == "failed"
    assert detail["pickup"]["state"] == "notified"  # the window still runs: a reminder may reach


class RefusingMailer:
    """A mail path that cannot take the notice now (the database away, say)."""

    def send(self, mail: object) -> str:
        raise ServiceUnavailable("the database is not answering")


def test_a_notice_that_cannot_be_sent_is_recorded_and_retried(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    sp = mail_env.sp
    cid = send_pickup(client, key, "otto")
    working, sp.pickup.mailer = sp.pickup.mailer, RefusingMailer()
    now = datetime.now(UTC)
    notify(mail_env, now)
    failure = records_of(mail_env, cid, "ConsignmentNotificationFailure")
    assert [r["reasons"][0]["code"] for r in failure] == ["notice_not_accepted"]
    assert sp.pickup.repo.get(cid).state == "new"  # type: ignore[union-attr]
    sp.pickup.mailer = working
    notify(mail_env, now + timedelta(seconds=30))  # not yet: retried after 60 s
    assert "ConsignmentNotification" not in events_of(mail_env, cid)
    notify(mail_env, now + timedelta(seconds=61))
    assert events_of(mail_env, cid).count("ConsignmentNotification") == 1
    assert "/pickup/" in wait_mail(mail_env, "otto", NOTICE)


def test_the_notice_channels_are_read_from_an_smtp_header() -> None:
    from sealpost.communications.email.submission import _delivery_from_headers

    raw = b"Sealpost-Delivery: pickup\r\nSealpost-Pickup-Notice: Email, SMS\r\nSubject: x\r\n\r\nhi"
    mode, request = _delivery_from_headers(raw)
    assert (mode, request.notice) == ("pickup", ("email", "sms"))
    assert _delivery_from_headers(b"Subject: x\r\n\r\nhi")[1].notice is None


@pytest.mark.parametrize("mail_overrides", [{"content_inline_max_bytes": 0}])
def test_content_missing_from_the_store_is_named_and_no_handover_is_recorded(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    """ContentHandover says the recipient was given the content: it is recorded only once the
    bytes were read.  A blob gone from the store (a restore that missed it, an operator's
    mistake) is a 500 ``blob_missing`` naming the communication, and no handover; once the
    blob is back, the content is handed over and recorded once."""
    cid, recipient, _ = _opened(mail_env, client, key, "dora")
    _identify_by_email(mail_env, recipient, "dora")
    assert recipient.call("POST", "/accept").status_code == 200
    with mail_env.sp.engine.connect() as conn:
        sha256 = conn.execute(
            select(pickups.c.content_sha256).where(pickups.c.communication_id == cid)
        ).scalar_one()
    stored = mail_env.sp.blobs.path(sha256)  # type: ignore[attr-defined]
    aside = tmp_path / "aside"
    stored.rename(aside)

    for path in ("/content", "/download/eml", "/download/0"):
        missing = recipient.call("GET", path)
        assert missing.status_code == 500, missing.text
        problem = missing.json()
        assert problem["error"] == "blob_missing"
        assert problem["subject_id"] == cid and problem["sha256"] == sha256
    assert "ContentHandover" not in events_of(mail_env, cid)
    assert "ContentAccessTracking" not in events_of(mail_env, cid)
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["status"] != "handed_over"

    aside.rename(stored)
    assert recipient.call("GET", "/content").json()["text"].strip() == SECRET_TEXT
    assert recipient.call("GET", "/content").status_code == 200
    assert events_of(mail_env, cid).count("ContentHandover") == 1
