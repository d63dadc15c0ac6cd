"""SMS as a channel for codes, end to end: the code travels as a certified SMS through the
SMPP adapter to a real SMSC peer on 127.0.0.1, and the test reads it from what the SMSC took
(the submit_sm's short message), as the person would read it on their phone."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.sms.model import GSM7_BASIC, GSM7_EXTENSION
from tests.certificates.support import poppler
from tests.pickup.flow import (
    ATTACHMENT,
    SECRET_TEXT,
    Recipient,
    events_of,
    link_in,
    mails_to,
    records_of,
    send_pickup,
    token_of,
)
from tests.signatures.flow import link_path, open_page, process_request, signer, wait_mail
from tests.sms.conftest import sms_settings
from tests.support.mail import MailEnv, email_settings
from tests.support.smsc import Outcome, SmscPeer
from tests.support.smtp_peer import RecipientServer

PHONE = "+34612345612"


_EXTENSION = {value: ch for ch, value in GSM7_EXTENSION.items()}


def _gsm7(octets: bytes) -> str:
    """3GPP TS 23.038 §6.2.1 default alphabet, unpacked (as SMPP carries it), read back by the
    table (an independent reading would be better; the table is the standard's)."""
    out, escape = [], False
    for value in octets:
        if escape:
            out.append(_EXTENSION[value])
            escape = False
        elif value == 0x1B:
            escape = True
        else:
            out.append(GSM7_BASIC[value])
    return "".join(out)


@dataclass
class CodesEnv:
    """A Sealpost that mails through a real SMTP peer and texts through a real SMSC peer."""

    mail: MailEnv
    smsc: SmscPeer
    client: TestClient
    key: dict[str, str]

    @property
    def sp(self) -> Sealpost:
        return self.mail.sp

    def texts_to(self, number: str) -> list[str]:
        """Every SMS text the SMSC took for ``number`` (single segments: codes and notices are
        short), decoded by its data_coding (8: UCS-2; 0: GSM-7, one septet per octet)."""
        return [
            t.text.decode("utf-16-be") if t.data_coding == 8 else _gsm7(t.text)
            for t in self.smsc.taken(number.lstrip("+"))
        ]

    def wait_text(self, number: str, pattern: str, count: int = 1, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [t for t in self.texts_to(number) if re.search(pattern, t)]
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no SMS {pattern!r} #{count}: {self.texts_to(number)}")
            time.sleep(0.05)


@pytest.fixture
def smsc() -> Iterator[SmscPeer]:
    peer = SmscPeer().start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def codes_overrides() -> dict[str, object]:
    """Settings a test module changes (the browser test: the public URL)."""
    return {}


@pytest.fixture
def codes_env(
    settings: Settings, smsc: SmscPeer, codes_overrides: dict[str, object]
) -> Iterator[CodesEnv]:
    with RecipientServer([]) as peer:
        configured = sms_settings(
            email_settings(settings, peer.port),
            smsc,
            delivery_enabled=True,
            pickup_worker_interval_seconds=0.2,
            **codes_overrides,
        )
        sp = build(configured)
        tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
        credential = sp.senders.issue_smtp_credential(tenant.id)
        secret = sp.tenants.issue_api_key(tenant.id, "crm").secret
        try:
            with TestClient(create_app(sp, start_background=False)) as client:
                sp.start_background()
                sp.start_email()
                sp.start_sms()
                yield CodesEnv(
                    MailEnv(sp, tenant.id, credential, peer),
                    smsc,
                    client,
                    {"Authorization": f"Bearer {secret}"},
                )
        finally:
            sp.stop_background()
            sp.engine.dispose()


def _code(text: str) -> str:
    found = re.search(r"\b(\d{6})\b", text)
    assert found, text
    return found.group(1)


def test_a_signer_identified_by_a_code_sent_by_sms_signs(codes_env: CodesEnv) -> None:
    env = codes_env
    body = process_request(
        signer("Lucía", "lucia", identification="sms_otp", phone="+34 612 34 56 12")
    )
    created = env.client.post("/v1/signatures", json=body, headers=env.key)
    assert created.status_code == 201, created.text
    process_id = created.json()["id"]
    path = link_path(wait_mail(env.mail, "lucia", "/sign/"))
    assert "text you a 6-digit code by SMS" in env.client.get(path).text
    page = open_page(env.client, path)
    sent = page.call("POST", "/otp")
    assert sent.status_code == 200, sent.text
    assert sent.json()["sent_to"] == "+34 6•• ••• •12"
    assert sent.json()["channel"] == "sms"
    text = env.wait_text(PHONE, "Your signing code")
    assert "Repair quote" not in text  # no title on a lock screen
    assert not [m for m in env.mail.peer.received if "signing code" in m.data.decode("latin-1")]
    code = _code(text)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = page.call("POST", "/otp/verify", json={"code": wrong})
    assert refused.status_code == 422 and refused.json()["attempts_left"] == 4
    assert page.call("POST", "/otp/verify", json={"code": code}).status_code == 200
    state = page.call("GET", "/state").json()
    assert state["status"] == "ready"
    assert state["otp"]["channel"] == "sms" and state["otp"]["sent_to"] == "+34 6•• ••• •12"
    signed = page.sign(typed="Lucía")
    assert signed.status_code == 200 and signed.json()["status"] == "signed", signed.text

    timeline = env.sp.signatures.repo.timeline(env.mail.tenant_id, process_id)
    records = {e.event: e.record for e in timeline}
    identified = records["SignerIdentified"]
    assert identified["details"]["otp_channel"] == "sms"
    assert identified["details"]["sent_to_masked"] == "+34 6•• ••• •12"
    ident = identified["recipient"]["identification"]
    assert ident["method"] == "sms_otp" and ident["sent_to"] == PHONE
    sms_id = ident["sms_id"]
    # the code itself went as a certified SMS with its own evidence, delivered per receipt
    deadline = time.monotonic() + 20
    while env.sp.sms_repository.get(sms_id).status != "delivered":  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sms_events = [e.event for e in env.sp.sms_repository.timeline(env.mail.tenant_id, sms_id)]
    assert sms_events[0] == "SubmissionAcceptance" and "DeliveryReported" in sms_events
    assert records["DocumentSigned"]["recipient"]["identification"]["otp_channel"] == "sms"


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        (None, "signers[0].phone is required for sms_otp"),
        ("+34 000", "signers[0].phone is not a valid E.164 number"),
        ("612 34 56 12", "signers[0].phone is not a valid E.164 number"),  # no country code
    ],
)
def test_an_sms_signer_without_a_usable_number_is_refused_naming_the_field(
    codes_env: CodesEnv, phone: str | None, message: str
) -> None:
    extra = {"phone": phone} if phone else {}
    body = process_request(signer("Lucía", "lucia", identification="sms_otp", **extra))
    answer = codes_env.client.post("/v1/signatures", json=body, headers=codes_env.key)
    assert answer.status_code == 422 and message in answer.json()["message"], answer.text
    listed = codes_env.client.get("/v1/signatures", headers=codes_env.key)
    assert listed.json()["items"] == []
    assert codes_env.smsc.submissions == []  # nothing was texted


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_pickup_noticed_by_sms_and_identified_by_an_sms_code(
    codes_env: CodesEnv, tmp_path: Path
) -> None:
    """Notice by SMS only (sender hidden: fr), link from the SMS, code by SMS, accept,
    handover; NotificationDelivered from the notice SMS's own receipt."""
    env, number = codes_env, "+34612345613"
    cid = send_pickup(
        env.client,
        env.key,
        "rosa",
        identification="sms_otp",
        phone=number,
        notice=["sms"],
        policy="fr",
    )
    notice = env.wait_text(number, "/pickup/")
    assert SECRET_TEXT not in notice and "Claim 4711" not in notice
    assert "claims@acme.test" not in notice  # fr: the sender is hidden until acceptance
    assert "certified message awaits you until" in notice
    # the SMS can reach the SMSC before the notice's record commits (the sender wakes at once)
    _wait(lambda: "ConsignmentNotification" in events_of(env.mail, cid), "ConsignmentNotification")
    sent = records_of(env.mail, cid, "ConsignmentNotification")
    assert [r["details"]["channel"] for r in sent] == ["sms"]
    notice_sms = sent[0]["details"]["notice_sms_id"]
    _wait(lambda: "NotificationDelivered" in events_of(env.mail, cid), "NotificationDelivered")
    (delivered,) = records_of(env.mail, cid, "NotificationDelivered")
    assert delivered["details"]["channel"] == "sms"
    assert delivered["details"]["notice_sms_id"] == notice_sms
    sms_events = [e.event for e in env.sp.sms_repository.timeline(env.mail.tenant_id, notice_sms)]
    assert "DeliveryReported" in sms_events  # from the operator's receipt, nothing else
    detail = env.client.get(f"/v1/communications/{cid}", headers=env.key).json()
    assert detail["pickup"]["notice"]["channels"] == ["sms"]
    assert detail["pickup"]["notice"]["sms_status"] == "delivered"

    recipient = Recipient(env.client)
    view = recipient.open(token_of(link_in(notice)))
    assert view["identification"] == "sms_otp"
    assert len(records_of(env.mail, cid, "NotificationAccessTracking")) == 1
    code_sent = recipient.call("POST", "/code")
    assert code_sent.json()["sent_to"] == "+34 6•• ••• •13", code_sent.text
    code = _code(env.wait_text(number, "Su código"))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert recipient.call("POST", "/identify", {"answer": wrong}).status_code == 422
    right = recipient.call("POST", "/identify", {"answer": code})
    assert right.status_code == 200 and right.json()["identified"] is True
    assert recipient.call("POST", "/accept").json()["state"] == "accepted"
    assert recipient.call("GET", "/content").json()["text"].strip() == SECRET_TEXT
    assert recipient.call("GET", "/download/0").content == ATTACHMENT
    events = events_of(env.mail, cid)
    assert events.count("ConsignmentAcceptance") == 1 and events.count("ContentHandover") == 1
    handover = records_of(env.mail, cid, "ContentHandover")[0]
    assert handover["details"]["identification"]["channel"] == "sms"
    assert not [m for m in mails_to(env.mail, "rosa")]  # nothing went by email
    # the certificate says what the SMS evidence shows: the operator's report, no more
    env.mail.wait_certificate(cid, 1)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(
        env.client.get(f"/v1/communications/{cid}/certificate.pdf", headers=env.key).content
    )
    words = " ".join(poppler("pdftotext", path, "-").stdout.split())
    assert "A notice by SMS was sent to the recipient (without the content" in words
    assert "The mobile operator reported the notice SMS delivered to the handset" in words
    assert "mail server accepted the notice" not in words


def test_a_notice_by_email_and_sms_whose_sms_is_undelivered(codes_env: CodesEnv) -> None:
    """Both channels, each its own link: the email notice is delivered, the SMS is reported
    undelivered by the operator (ConsignmentNotificationFailure for the SMS only)."""
    env, number = codes_env, "+34612345614"
    env.smsc.script[number.lstrip("+")] = Outcome("undelivered")
    cid = send_pickup(env.client, env.key, "olga", phone=number, notice=["email", "sms"])
    text = env.wait_text(number, "/pickup/")
    assert "claims@acme.test" in text  # the default policy shows the sender
    mail = wait_mail(env.mail, "olga", "/pickup/")
    assert token_of(link_in(text)) != token_of(link_in(mail))
    _wait(
        lambda: (
            {"NotificationDelivered", "ConsignmentNotificationFailure"}
            <= set(events_of(env.mail, cid))
        ),
        "both notices' outcomes",
    )
    (failure,) = records_of(env.mail, cid, "ConsignmentNotificationFailure")
    assert failure["details"]["channel"] == "sms"
    assert "undelivered" in failure["reasons"][0]["text"]
    (delivered,) = records_of(env.mail, cid, "NotificationDelivered")
    assert delivered["details"]["channel"] == "email"
    # the SMS link works although its SMS was reported undelivered (it was read, somehow)
    Recipient(env.client).open(token_of(link_in(text)))
    detail = env.client.get(f"/v1/communications/{cid}", headers=env.key).json()["pickup"]
    assert (detail["notice"]["status"], detail["notice"]["sms_status"]) == ("delivered", "failed")


@pytest.mark.parametrize(
    ("pickup", "field"),
    [
        ({"notice": ["sms"]}, "pickup.phone"),
        ({"notice": ["sms"], "phone": "0612345612"}, "pickup.phone"),
        ({"notice": ["fax"]}, "notice"),
        ({"notice": []}, "notice"),
    ],
)
def test_an_sms_notice_that_cannot_be_sent_is_refused_naming_the_field(
    codes_env: CodesEnv, pickup: dict[str, object], field: str
) -> None:
    answer = codes_env.client.post(
        "/v1/communications",
        json={
            "from": "claims@acme.test",
            "to": ["uma@recipient.test"],
            "subject": "Claim 4711",
            "text": SECRET_TEXT,
            "delivery": "pickup",
            "pickup": pickup,
        },
        headers=codes_env.key,
    )
    assert answer.status_code == 422 and field in answer.text, answer.text
