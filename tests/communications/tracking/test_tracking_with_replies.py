"""Open and click tracking together with reply capture, end to end (SQLite and PostgreSQL):
each recipient's delivered bytes carry its own reply address *and* its own tracking rewrites,
DKIM-signed by the tenant's domain; the sealed SubmissionAcceptance digest is the tenant's
``original.eml``; a reply to the tracked copy's Reply-To lands on the right communication; the
certificate's words say what was actually changed (opens only: no link was redirected)."""

from __future__ import annotations

import hashlib
import re
import smtplib
import uuid
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealpost.communications.email.dkim import (
    generate_dkim_key,
    pinned_key_lookup,
    verify_message,
)
from tests.certificates.support import poppler
from tests.communications.tracking.test_open_click_tracking import (
    HTML,
    TEXT,
    issue_certificate,
    part,
    records,
    turn_on,
)
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {
        "certificates_enabled": False,
        "pickup_worker_enabled": False,
        "public_url": "https://sealpost.example",
    }


def _delivered(env: MailEnv, cid: str) -> bytes:
    c = env.wait_status(cid, "delivered")
    found = [r for r in env.peer.received if c.recipient in r.rcpt_tos]
    assert len(found) == 1
    return bytes(found[0].data)


def test_a_tracked_email_with_capture_carries_its_reply_address_and_its_rewrites(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    key, record = generate_dkim_key()
    mail_env.sp.senders.add_domain(
        mail_env.tenant_id, "acme.test", selector="sp", private_key_pem=key, public_record=record
    )
    turn_on(mail_client, mail_key, opens=True, clicks=True)
    put = mail_client.put("/v1/settings/replies", json={"replies": "capture"}, headers=mail_key)
    assert put.status_code == 200, put.text
    answer = mail_client.post(
        "/v1/communications",
        json={
            "from": "offers@acme.test",
            "to": [f"ivo@{RECIPIENT_DOMAIN}", f"jon@{RECIPIENT_DOMAIN}"],
            "subject": "Offer 42",
            "text": TEXT,
            "html": HTML,
        },
        headers=mail_key,
    )
    assert answer.status_code == 201, answer.text
    ids = [c["id"] for c in answer.json()["communications"]]
    tokens: set[str] = set()
    for cid in ids:
        data = _delivered(mail_env, cid)
        msg = message_from_bytes(data)
        reply_to = [a for _, a in getaddresses(msg.get_all("Reply-To") or [])]
        assert reply_to == ["offers@acme.test", mail_env.sp.reply_addresses.address(cid)]
        html = part(msg, "text/html")
        found = re.findall(r"https://sealpost\.example/t/[oc]/([A-Za-z0-9_-]{22})", html)
        assert len(found) == 2 and "shop.acme.test" not in html, html
        tokens.update(found)
        assert part(msg, "text/plain") == TEXT
        # the tenant's DKIM signature covers the tracked copy as transmitted
        result = verify_message(
            data, key_lookup=pinned_key_lookup({("sp", "acme.test"): record}, None)
        )
        assert result.valid and result.domain == "acme.test", result.reason

        (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
        original = mail_client.get(f"/v1/communications/{cid}/original.eml", headers=mail_key)
        assert original.status_code == 200
        assert hashlib.sha256(original.content).hexdigest() == acceptance["content"]["sha256"]
        assert mail_env.sp.reply_addresses.address(cid).encode() in original.content
        assert b"/t/o/" not in original.content  # as submitted (with its reply address)
        tracking = acceptance["details"]["tracking"]
        tracked = mail_env.sp.contents.get(tracking["tracked_sha256"])
        assert hashlib.sha256(tracked).hexdigest() == tracking["tracked_sha256"]
        assert mail_env.sp.reply_addresses.address(cid).encode() in tracked
        (delivery,) = records(mail_env, cid, "RelayToNonERDS")
        details = delivery["details"]
        assert details["received_sha256"] == acceptance["content"]["sha256"]
        assert details["delivered_changes"]["tracked_sha256"] == tracking["tracked_sha256"]
        assert details["delivered_sha256"] == hashlib.sha256(data).hexdigest()
    assert len(tokens) == 4  # each recipient its own pixel and link tokens

    # a reply to the tracked copy's Reply-To is recorded on that recipient's communication
    first = ids[0]
    c = mail_env.sp.communications.get(first)
    assert c is not None
    reply = (
        f"From: Ivo <ivo@{RECIPIENT_DOMAIN}>\r\nTo: offers@acme.test\r\nSubject: Re: Offer 42\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{RECIPIENT_DOMAIN}>\r\nIn-Reply-To: {c.message_id}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nYes please.\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as smtp:
        refused = smtp.sendmail(
            f"ivo@{RECIPIENT_DOMAIN}", [mail_env.sp.reply_addresses.address(first)], reply
        )
    assert refused == {}
    listed = mail_client.get(f"/v1/communications/{first}/replies", headers=mail_key).json()
    assert [r["matched_by"] for r in listed["items"]] == ["reply_address"]
    other = mail_client.get(f"/v1/communications/{ids[1]}/replies", headers=mail_key).json()
    assert other["items"] == []


def test_opens_only_the_records_and_the_certificate_say_no_link_was_redirected(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], tmp_path: Path
) -> None:
    turn_on(mail_client, mail_key, opens=True)
    answer = mail_client.post(
        "/v1/communications",
        json={
            "from": "offers@acme.test",
            "to": [f"kim@{RECIPIENT_DOMAIN}"],
            "subject": "Offer 42",
            "html": HTML,
        },
        headers=mail_key,
    )
    assert answer.status_code == 201, answer.text
    cid = answer.json()["communications"][0]["id"]
    mail_env.wait_status(cid, "delivered")
    (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
    tracking = acceptance["details"]["tracking"]
    assert tracking["pixel"] is True and tracking["links"] == 0
    assert "redirect" not in tracking["note"], tracking["note"]

    pdf = issue_certificate(mail_env, cid)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Non-essential tracking" in text
    assert "1x1 image" in text
    # the copy's links were the sender's own: no word may say they went through a redirect
    assert "redirect" not in text, text


def test_a_message_certified_by_address_is_never_tracked_so_its_own_dkim_stays_valid(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    """Mail sent to a certify address is identified by the DKIM signature of the tenant's
    own server; a tracked copy would break that signature for the recipient (as a Reply-To
    would: reply capture skips these too), so it goes out untracked."""
    from email.message import EmailMessage
    from email.policy import SMTP

    from sealpost.communications.email.dkim import sign_message
    from tests.communications.email.test_inbound import _tenant_signer, send_inbound

    own_key = _tenant_signer(mail_env)
    own_record = mail_env.sp.senders.domain("acme.test").pinned_keys["mail"]
    turn_on(mail_client, mail_key, opens=True, clicks=True)
    certify = f"lea@{RECIPIENT_DOMAIN}.certify.sealpost.test"
    msg = EmailMessage()
    msg["From"] = "service@acme.test"
    msg["To"] = certify
    msg["Subject"] = "Offer by certify address"
    msg["Message-ID"] = "<certify-offer@acme.test>"
    msg["Date"] = "Mon, 07 Dec 2026 09:00:00 +0000"
    msg.set_content(TEXT)
    msg.add_alternative(HTML, subtype="html")
    raw = msg.as_bytes(policy=SMTP)
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=own_key) + raw
    code, reply = send_inbound(mail_env, "service@acme.test", certify, signed)
    assert code == 250, reply
    cid = reply.decode().split("queued as ")[1]
    data = _delivered(mail_env, cid)
    assert b"/t/o/" not in data and b"/t/c/" not in data
    (acceptance,) = records(mail_env, cid, "SubmissionAcceptance")
    assert "tracking" not in acceptance["details"]
    own_only = pinned_key_lookup({("mail", "acme.test"): own_record}, None)
    result = verify_message(data, key_lookup=own_only)
    assert "acme.test" in result.valid_domains, result.reason
