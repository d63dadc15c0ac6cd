"""A tenant may hide the sender whatever the policy (``hide_sender`` of its pickup settings):
the notice's From, Subject and body name no sender, and the page names it only after
acceptance.  Without it, an ``es`` notice names the sender (the same test, the other way)."""

from __future__ import annotations

from email import message_from_bytes, policy

from fastapi.testclient import TestClient

from tests.pickup.flow import (
    Recipient,
    code_in,
    link_in,
    notify,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

NOTICE = "certified message is waiting"
SENDER = "claims@acme.test"


def _notice_parts(env: MailEnv, local: str) -> tuple[str, str, str, bytes]:
    wait_mail(env, local, NOTICE)
    address = f"{local}@{RECIPIENT_DOMAIN}"
    raw = next(r.data for r in env.peer.received if address in r.rcpt_tos)
    message = message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain",))
    assert body is not None
    return str(message["From"]), str(message["Subject"]), body.get_content(), raw


def test_the_tenant_hides_the_sender_in_the_notice_and_until_acceptance(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    shown = send_pickup(client, key, "sal", policy="es")
    settings = {"delivery": "direct", "policy": "es", "hide_sender": True}
    put = client.put("/v1/settings/pickup", json=settings, headers=key)
    assert put.status_code == 200 and put.json()["hide_sender"] is True
    got = client.get("/v1/settings/pickup", headers=key).json()
    assert got["hide_sender"] is True and got["policy"] == "es"
    hidden = send_pickup(client, key, "tom", policy="es")
    notify(mail_env)

    sender_from, subject, body, _ = _notice_parts(mail_env, "sal")
    assert SENDER in body  # es shows the sender unless the tenant hides it
    sender_from, subject, body, raw = _notice_parts(mail_env, "tom")
    for part in (sender_from, subject, body):
        assert SENDER not in part and "acme" not in part.casefold()
    assert b"acme.test" not in raw.lower()
    detail = client.get(f"/v1/communications/{hidden}", headers=key).json()["pickup"]
    assert detail["hide_sender"] is True
    assert (
        client.get(f"/v1/communications/{shown}", headers=key).json()["pickup"]["hide_sender"]
        is False
    )

    recipient = Recipient(client)
    assert recipient.open(token_of(link_in(body)))["sender"] is None
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(mail_env, "tom", "Su código"))
    identified = recipient.call("POST", "/identify", {"answer": code})
    assert identified.status_code == 200 and identified.json()["sender"] is None
    accepted = recipient.call("POST", "/accept")
    assert accepted.status_code == 200 and accepted.json()["sender"] == SENDER
    assert recipient.call("GET", "/content").json()["sender_address"] == SENDER


def test_hide_sender_must_be_a_boolean(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    for value in ("maybe", "true", 1):
        bad = client.put("/v1/settings/pickup", json={"hide_sender": value}, headers=key)
        assert bad.status_code == 422 and "hide_sender" in bad.text
    assert client.get("/v1/settings/pickup", headers=key).json()["hide_sender"] is False
