"""Pickups noticed by SMS after review 2: the sender's resend goes by the pickup's own
channels (M6), a pickup's number is checked as the sms domain checks it (M5), and the SMS
notice states the deadline on the policy's legal clock and stays GSM-7 (M7, L1)."""

from __future__ import annotations

import re

from tests.pickup.flow import pickup_request, records_of
from tests.sms.test_sms_codes import CodesEnv, codes_env, codes_overrides, smsc

__all__ = ["codes_env", "codes_overrides", "smsc"]

PHONE = "+34612345612"


def _pickup(env: CodesEnv, **options: object) -> str:
    r = env.client.post(
        "/v1/communications", json=pickup_request("yan", **options), headers=env.key
    )
    assert r.status_code == 201, r.text
    cid: str = r.json()["communications"][0]["id"]
    return cid


def test_resend_of_an_sms_only_pickup_goes_by_sms_with_a_fresh_link(codes_env: CodesEnv) -> None:
    env = codes_env
    cid = _pickup(env, notice=["sms"], identification="sms_otp", phone=PHONE)
    env.sp.pickup.run_due()
    first = env.wait_text(PHONE, "/pickup/")
    resent = env.client.post(f"/v1/communications/{cid}/pickup/resend", headers=env.key)
    assert resent.status_code == 200, resent.text
    body = resent.json()
    assert body["channels"] == ["sms"] and body["notice_sms_id"]
    assert body["notice_communication_id"] is None
    second = env.wait_text(PHONE, "/pickup/", count=2)
    link = re.compile(r"/pickup/(\S+)")
    assert link.findall(first) != link.findall(second)
    assert not [m for m in env.mail.peer.received if b"/pickup/" in m.data]  # no email at all
    notices = records_of(env.mail, cid, "ConsignmentNotification")
    assert [n["details"]["channel"] for n in notices] == ["sms", "sms"]
    assert notices[-1]["details"]["reason"] == "resent"
