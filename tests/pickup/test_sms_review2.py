"""Pickups noticed by SMS after review 2: the sender's resend goes by the pickup's own
channels (M6), a pickup's number is checked as the sms domain checks it (M5), and the SMS
notice states the deadline on the policy's legal clock and stays GSM-7 (M7, L1)."""

from __future__ import annotations

import re
import time
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from sealpost.sms.model import split
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


def test_a_pickup_phone_no_operator_can_route_is_refused_naming_the_field(
    codes_env: CodesEnv,
) -> None:
    env = codes_env
    for phone in ("+1000000000", "+999123456789", "+34 612 34 56 12\n"):
        r = env.client.post(
            "/v1/communications",
            json=pickup_request("zoe", notice=["sms"], phone=phone),
            headers=env.key,
        )
        assert r.status_code == 422, (phone, r.text)
        assert "pickup.phone" in r.text
    spaced = env.client.post(
        "/v1/communications",
        json=pickup_request("zoe", notice=["sms"], phone="+34 612 34 56 12"),
        headers=env.key,
    )
    assert spaced.status_code == 201  # written with spaces: the same number, kept as E.164
    cid = spaced.json()["communications"][0]["id"]
    assert env.sp.pickup.repo.get(cid).phone == PHONE


def test_a_notice_refused_for_good_by_the_sms_domain_is_not_tried_every_minute(
    codes_env: CodesEnv,
) -> None:
    env = codes_env
    cid = _pickup(env, notice=["sms"], phone=PHONE)
    with env.sp.pickup.repo.transaction() as conn:  # a pickup made before numbers were checked
        env.sp.pickup.repo.set_in(conn, cid, phone="+1000000000")
    now = env.sp.pickup.clock()
    for i in range(4):
        env.sp.pickup.run_due(now + timedelta(minutes=2 * i))
    failures = records_of(env.mail, cid, "ConsignmentNotificationFailure")
    assert len(failures) == 1 and failures[0]["details"]["final"] is True
    detail = env.client.get(f"/v1/communications/{cid}", headers=env.key).json()["pickup"]
    assert detail["notice"]["sms_status"] == "refused"


@pytest.mark.parametrize(
    ("policy_name", "zone"),
    [("es", "Europe/Madrid"), ("fr", "Europe/Paris"), ("default", None)],
)
def test_the_sms_notice_states_the_close_on_the_legal_clock_and_stays_gsm7(
    codes_env: CodesEnv, policy_name: str, zone: str | None
) -> None:
    env = codes_env
    cid = _pickup(env, notice=["sms"], phone=PHONE, policy=policy_name)
    with env.sp.pickup.repo.transaction() as conn:
        env.sp.pickup.repo.set_in(
            conn, cid, sender_name="Łukasz Żółć — Gestión 🚀 y Asociados de Tráfico S.L."
        )
    env.sp.pickup.run_due()
    env.wait_text(PHONE, "pickup|certified")
    time.sleep(0.5)  # every segment of it
    parts = env.texts_to(PHONE)
    text = "".join(parts)
    p = env.sp.pickup.repo.get(cid)
    assert p is not None and p.expires_at is not None
    local = p.expires_at.astimezone(ZoneInfo(zone) if zone else UTC)
    assert f"until {local:%d/%m/%Y %H:%M} {zone or 'UTC'}: " in text, text
    billed = split(text)
    assert billed.encoding == "gsm7" and billed.segments <= 2 and len(parts) == billed.segments
    if policy_name != "fr":  # fr hides the sender until acceptance
        assert "from Lukasz Zolc Gestion y Asociados de" in text, text
