"""SMS as a channel for codes, end to end: the code travels as a certified SMS through the
SMPP adapter to a real SMSC peer on 127.0.0.1, and the test reads it from what the SMSC took
(the submit_sm's short message), as the person would read it on their phone."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from tests.signatures.flow import link_path, open_page, process_request, signer, wait_mail
from tests.sms.conftest import sms_settings
from tests.support.mail import MailEnv, email_settings
from tests.support.smsc import SmscPeer
from tests.support.smtp_peer import RecipientServer

PHONE = "+34612345612"


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
        """Every SMS text the SMSC took for ``number`` (single-segment GSM-7 here)."""
        return [t.text.decode("latin-1") for t in self.smsc.taken(number.lstrip("+"))]

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
def codes_env(settings: Settings, smsc: SmscPeer) -> Iterator[CodesEnv]:
    with RecipientServer([]) as peer:
        configured = sms_settings(
            email_settings(settings, peer.port),
            smsc,
            delivery_enabled=True,
            pickup_worker_interval_seconds=0.2,
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
