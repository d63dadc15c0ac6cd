"""An SMS that carries a one-time code: sent and sealed, never shown to the tenant.

Codes go through another domain's ``SmsSender`` port with ``access_secret``; the sender of
record (the tenant) must not read them, or it could identify as the recipient.  Sent here
through the composition root's adapter, to the SMSC peer, like a pickup code.
"""

from __future__ import annotations

import hashlib
import time

from sealpost.app import PickupSms
from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.pickup.ports import OutgoingSms
from sealpost.sms.service import text_commitment
from tests.sms.conftest import SmsEnv

TO = "+34612345678"
TEXT = "Your code / Su codigo: 402917 (10 min)."  # GSM-7, one segment


def test_a_code_sms_is_delivered_but_its_text_is_withheld_from_the_tenant(
    sms_env: SmsEnv,
) -> None:
    sms_env.sp.start_background()  # the sequencer seals the records
    port = PickupSms(sms_env.sp.sms)
    sms_id = port.send(
        OutgoingSms(sms_env.tenant_id, TO, TEXT, {"purpose": "code"}, access_secret=True)
    )
    sms_env.wait_status(sms_id, "delivered")
    assert any(b"402917" in t.text for t in sms_env.smsc.taken(TO[1:]))  # the handset got it

    shown = sms_env.client.get(f"/v1/sms/{sms_id}", headers=sms_env.auth)
    assert shown.status_code == 200
    body = shown.json()
    assert body["text"] is None and body["text_withheld"] is True
    assert "402917" not in shown.text
    # no plain digest (it gives the code back in a million tries); what is sealed is the
    # commitment the operator opens with the nonce kept beside the text
    assert body["text_sha256"] is None
    assert hashlib.sha256(TEXT.encode()).hexdigest() not in shown.text
    stored = sms_env.sp.sms_repository.get(sms_id)
    assert stored is not None and stored.text_nonce is not None
    assert stored.text_nonce not in shown.text
    accepted = sms_env.sp.sms_repository.timeline(sms_env.tenant_id, sms_id)[0].record
    assert accepted["content"]["sha256"] == text_commitment(stored.text_nonce, TEXT)

    deadline = time.monotonic() + 20
    while True:
        answer = sms_env.client.get(f"/v1/sms/{sms_id}/certificate.pdf", headers=sms_env.auth)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    report = verify_certificate_pdf(answer.content, trust_roots=sms_env.sp.trust_roots)
    assert report.ok, report.failures
    assert "original.txt" not in report.attachments
    assert not any(b"402917" in content for content in report.attachments.values())


def test_an_ordinary_sms_still_shows_its_text(sms_env: SmsEnv) -> None:
    sms_id = sms_env.send(TO, "Su expediente 1234 está resuelto.")
    body = sms_env.client.get(f"/v1/sms/{sms_id}", headers=sms_env.auth).json()
    assert body["text"] == "Su expediente 1234 está resuelto." and body["text_withheld"] is False
