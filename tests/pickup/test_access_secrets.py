"""The sender cannot act as its own recipient (security review, HIGH).

The pickup notice (with its single-use link) and the code email are the tenant's own certified
communications, so the tenant's API key reaches them.  Here the tenant tries every route it
has: the original, the detail and timeline, the certificate and its attachments, the event
feed (what webhooks carry).  The link and the code are in none of them; and a code read
elsewhere does not work in a page session of one's own.  The real recipient still picks up.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

from sealpost.certificates import verify_certificate_pdf
from sealpost.certificates.embedded import read_embedded_files
from sealpost.events.tables import outbox_events
from tests.certificates.support import poppler
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
WITHHELD = "urn:sealpost:problem:access_secret_withheld"


def _holds(data: bytes, secret: str) -> bool:
    """``secret`` as a token of its own (a code's six digits inside a hex digest, a base64 run
    or a timestamp's microseconds are not it)."""
    edge = rb"[0-9A-Za-z_+/=-]"
    return (
        re.search(
            rb"(?<!" + edge + rb")" + re.escape(secret.encode()) + rb"(?!" + edge + rb")", data
        )
        is not None
    )


def _certificate(client: TestClient, key: dict[str, str], cid: str) -> bytes:
    answer = client.get(f"/v1/communications/{cid}/certificate.pdf", headers=key)
    assert answer.status_code == 200, answer.text
    return answer.content


@pytest.mark.parametrize("mail_overrides", [{"pickup_worker_enabled": False}])
def test_the_sender_reads_neither_the_link_nor_the_code_and_cannot_use_them(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    cid = send_pickup(client, key, "deb", policy="es")
    notify(mail_env)
    token = token_of(link_in(wait_mail(mail_env, "deb", NOTICE)))  # the real debtor's mailbox
    detail = client.get(f"/v1/communications/{cid}", headers=key).json()
    notice_id = detail["pickup"]["notice"]["communication_id"]  # the sender knows its id

    refused = client.get(f"/v1/communications/{notice_id}/original.eml", headers=key)
    assert refused.status_code == 403
    assert refused.json()["type"] == WITHHELD and refused.json()["status"] == 403
    assert token not in refused.text

    recipient = Recipient(client)
    recipient.open(token)
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(mail_env, "deb", "Su código"))
    secrets = (token, code)

    # Every communication of the tenant, every route it has to it.
    items = client.get("/v1/communications?limit=200", headers=key).json()["items"]
    withheld = []
    for item in items:
        shown = client.get(f"/v1/communications/{item['id']}", headers=key)
        assert not any(_holds(shown.content, s) for s in secrets), item
        original = client.get(f"/v1/communications/{item['id']}/original.eml", headers=key)
        assert not any(_holds(original.content, s) for s in secrets), item
        if original.status_code == 403:
            assert original.json()["type"] == WITHHELD
            withheld.append(item["id"])
        else:
            assert original.status_code == 200
    code_id = next(
        e["record"]["subject"]["id"]
        for i in withheld
        for e in client.get(f"/v1/communications/{i}", headers=key).json()["timeline"]
        if e["event"] == "SubmissionAcceptance" and e["record"]["details"]["purpose"] == "code"
    )
    assert sorted(withheld) == sorted([notice_id, code_id])  # the pickup itself is served
    for i in withheld:
        (accepted,) = records_of(mail_env, i, "SubmissionAcceptance")
        assert accepted["details"]["access_secret"] is True
        assert accepted["content"]["parts"] == []  # a code's part digest would give it away

    # The certificates of the notice and of the code: digest and size, no original.
    for i in withheld:
        mail_env.wait_certificate(i, 1)
        pdf = _certificate(client, key, i)
        files = read_embedded_files(PdfFileReader(io.BytesIO(pdf)))
        assert "original.eml" not in files and "manifest.json" in files
        assert not any(_holds(content, s) for content in files.values() for s in secrets)
        path = tmp_path / f"{i}.pdf"
        path.write_bytes(pdf)
        text = " ".join(poppler("pdftotext", path, "-").stdout.split())
        assert "single-use access secret" in text and "the operator" in text
        assert not any(_holds(text.encode(), s) for s in secrets)
        report = verify_certificate_pdf(pdf)
        assert report.ok, report.failures

    # A code read anywhere but in the page that asked for it is worth nothing: the sender,
    # with a page of its own (the reminder's link), types the right code and is refused.
    pickup = mail_env.sp.pickup.repo.get(cid)
    assert pickup is not None and pickup.next_reminder_at is not None
    notify(mail_env, pickup.next_reminder_at + timedelta(seconds=1))
    other = Recipient(client)
    other.open(token_of(link_in(wait_mail(mail_env, "deb", "Reminder: a certified message"))))
    stolen = other.call("POST", "/identify", {"answer": code})
    assert stolen.status_code == 422 and "newer code" in stolen.json()["detail"]  # not compared
    assert other.call("POST", "/accept").status_code == 403

    # The recipient's own page still works with the same code.
    assert recipient.call("POST", "/identify", {"answer": code}).status_code == 200
    assert recipient.call("POST", "/accept").status_code == 200
    (accepted,) = records_of(mail_env, cid, "ConsignmentAcceptance")
    assert accepted["details"]["identification"]["proves"] == (
        f"a code sent to {pickup.recipient} was entered: control of that mailbox"
    )

    # Nor is either secret in any event the tenant pulls or a webhook would carry.
    with mail_env.sp.engine.connect() as conn:
        payloads = [str(row).encode() for row in conn.execute(select(outbox_events)).all()]
    assert payloads and not any(_holds(p, s) for p in payloads for s in secrets)
    feed = client.get("/v1/events", params={"limit": 1000}, headers=key)
    assert feed.status_code == 200 and not any(_holds(feed.content, s) for s in secrets)


@pytest.mark.parametrize("mail_overrides", [{"pickup_worker_enabled": False}])
def test_a_challenge_says_the_sender_knows_the_answer(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], tmp_path: Path
) -> None:
    cid = send_pickup(
        client,
        key,
        "cha",
        identification="challenge",
        challenge_question="Your customer number?",
        challenge_answer="C-20931",
    )
    notify(mail_env)
    recipient = Recipient(client)
    recipient.open(token_of(link_in(wait_mail(mail_env, "cha", NOTICE))))
    assert recipient.call("POST", "/identify", {"answer": "c-20931"}).status_code == 200
    assert recipient.call("POST", "/accept").status_code == 200
    (accepted,) = records_of(mail_env, cid, "ConsignmentAcceptance")
    assert accepted["details"]["identification"]["proves"] == (
        "answered the question the sender set (the sender knows the answer)"
    )
    mail_env.wait_certificate(cid, 1)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(_certificate(client, key, cid))
    text = " ".join(poppler("pdftotext", path, "-").stdout.split())
    assert "The person who answered the sender's question accepted the message" in text
    assert "The recipient accepted" not in text
