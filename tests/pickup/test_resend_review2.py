"""The sender's resend after review 2: a recipient who lost the page after accepting gets the
content through a resend (H2), older unopened links stop working (M1), resends are capped and
do not throw an identified recipient out (M3), a resend after the window closed expires the
pickup and is refused (M4), and an odd path parameter is a 422, not a 500 (L2)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.pickup.flow import (
    Recipient,
    code_in,
    events_of,
    link_in,
    notify,
    records_of,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import MailEnv

NOTICE = "certified message is waiting"


def _identified(
    env: MailEnv, client: TestClient, local: str, count: int = 1, codes: int | None = None
) -> Recipient:
    who = Recipient(client)
    who.open(token_of(link_in(wait_mail(env, local, NOTICE, count=count))))
    assert who.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(env, local, "Su código", count=codes or count))
    assert who.call("POST", "/identify", {"answer": code}).status_code == 200
    return who


def test_accepted_recipient_who_lost_the_page_gets_the_content_by_a_resend(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "sol")
    notify(mail_env)
    link = token_of(link_in(wait_mail(mail_env, "sol", NOTICE)))
    first = Recipient(client)
    first.open(link)
    first.call("POST", "/code")
    code = code_in(wait_mail(mail_env, "sol", "Su código"))
    assert first.call("POST", "/identify", {"answer": code}).status_code == 200
    assert first.call("POST", "/accept").status_code == 200
    # a reload: the spent link's page still carries what the script needs to resume
    reload = client.get(f"/pickup/{link}")
    assert reload.status_code == 410 and '"resume": true' in reload.text
    assert first.call("GET", "/state").json()["state"] == "accepted"  # same session resumes
    # a new device: the sender resends, the recipient identifies and reads, no new acceptance
    resent = client.post(f"/v1/communications/{cid}/pickup/resend", headers=key)
    assert resent.status_code == 200, resent.text
    again = _identified(mail_env, client, "sol", count=2)
    shown = again.call("GET", "/content")
    assert shown.status_code == 200 and shown.json()["sender_address"]
    assert events_of(mail_env, cid).count("ConsignmentAcceptance") == 1
    assert events_of(mail_env, cid).count("ContentHandover") == 1


def test_resend_revokes_older_unopened_links(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "ola")
    notify(mail_env)
    leaked = token_of(link_in(wait_mail(mail_env, "ola", NOTICE)))
    assert client.post(f"/v1/communications/{cid}/pickup/resend", headers=key).status_code == 200
    assert client.post("/pickup/api/open", json={"link": leaked}).status_code == 410
    assert client.get(f"/pickup/{leaked}").status_code == 410
    real = _identified(mail_env, client, "ola", count=2, codes=1)
    assert real.call("POST", "/accept").status_code == 200


def test_resends_are_capped_and_keep_an_identified_recipient_in(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "tia", policy="es")
    notify(mail_env)
    identified = _identified(mail_env, client, "tia")
    codes = [
        client.post(f"/v1/communications/{cid}/pickup/resend", headers=key).status_code
        for _ in range(5)
    ]
    assert codes == [200, 200, 200, 409, 409]
    refused = client.post(f"/v1/communications/{cid}/pickup/resend", headers=key).json()
    assert "3 times" in refused["detail"]
    assert len(records_of(mail_env, cid, "ConsignmentNotification")) == 4
    assert identified.call("POST", "/accept").status_code == 200


def test_resend_after_the_window_closed_expires_the_pickup_and_is_refused(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "rui", policy="es")
    notify(mail_env)
    p = mail_env.sp.pickup.repo.get(cid)
    assert p is not None and p.expires_at is not None
    closed = p.expires_at + timedelta(hours=2)
    mail_env.sp.pickup.clock = lambda: closed
    r = client.post(f"/v1/communications/{cid}/pickup/resend", headers=key)
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert events_of(mail_env, cid).count("AcceptanceRejectionExpiry") == 1
    assert "ConsignmentNotification" not in events_of(mail_env, cid)[-1:]
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    assert detail["pickup"]["state"] == "expired"
    assert client.post(f"/v1/communications/{cid}/pickup/resend", headers=key).status_code == 409


@pytest.mark.parametrize("odd", ["%00", "x" * 5000, "%C3%A4" * 40])
def test_resend_with_an_odd_identifier_is_a_clear_answer(
    client: TestClient, key: dict[str, str], odd: str
) -> None:
    r = client.post(f"/v1/communications/{odd}/pickup/resend", headers=key)
    assert r.status_code in (404, 422), r.text


def test_a_code_superseded_by_another_page_is_named_and_not_counted(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    """Review 2 M2: the email's link on a computer and a reminder's on the phone, each page
    asks a code: the first page is told a newer code went to the other, and the try is free."""
    cid = send_pickup(client, key, "pia")
    notify(mail_env)
    pc = Recipient(client)
    pc.open(token_of(link_in(wait_mail(mail_env, "pia", NOTICE))))
    assert pc.call("POST", "/code").status_code == 200
    code_pc = code_in(wait_mail(mail_env, "pia", "Su código"))
    p = mail_env.sp.pickup.repo.get(cid)
    assert p is not None and p.next_reminder_at is not None
    notify(mail_env, p.next_reminder_at + timedelta(seconds=1))
    phone = Recipient(client)
    phone.open(token_of(link_in(wait_mail(mail_env, "pia", NOTICE, count=2))))
    assert phone.call("POST", "/code").status_code == 200
    stale = pc.call("POST", "/identify", {"answer": code_pc})
    assert stale.status_code == 422 and "newer code" in stale.json()["detail"]
    assert phone.call("GET", "/state").json()["attempts_left"] == 5  # not counted
    code_phone = code_in(wait_mail(mail_env, "pia", "Su código", count=2))
    assert phone.call("POST", "/identify", {"answer": code_phone}).status_code == 200
