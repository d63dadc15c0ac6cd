"""Reply capture: a recipient's answer, sent with smtplib to the inbound port, is kept and
evidenced on the communication it answers (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import smtplib
import uuid
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealpost.communications.certificates import summarize
from sealpost.communications.email.replies import ReplyAddresses
from sealpost.communications.email.verp import BounceAddresses
from sealpost.communications.tables import communication_replies
from sealpost.events.tables import outbox_events
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

BOB = f"bob@{RECIPIENT_DOMAIN}"


def _send(client: TestClient, key: dict[str, str], **extra: object) -> str:
    body = {
        "from": "service@acme.test",
        "to": [BOB],
        "subject": "Your invoice 42 is overdue",
        "text": "Please pay 120 EUR by Friday.",
        **extra,
    }
    answer = client.post("/v1/communications", json=body, headers=key)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["communications"][0]["id"])


def _delivered(env: MailEnv, cid: str) -> bytes:
    env.wait_status(cid, "delivered")
    c = env.sp.communications.get(cid)
    assert c is not None
    for received in env.peer.received:
        if c.message_id.encode() in received.data and c.recipient in received.rcpt_tos:
            return bytes(received.data)
    raise AssertionError("the recipient server never got it")


def _reply_to(delivered: bytes) -> list[str]:
    return [a for _, a in getaddresses(message_from_bytes(delivered).get_all("Reply-To") or [])]


def _reply(
    message_id: str,
    *,
    sender: str = BOB,
    subject: str = "Re: Your invoice 42 is overdue",
    extra: str = "",
    body: str = "I paid yesterday, see attached.\r\n",
) -> bytes:
    return (
        f"From: Bob <{sender}>\r\nTo: service@acme.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{RECIPIENT_DOMAIN}>\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def _inbound(env: MailEnv, mail_from: str, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", env.sp.smtp_ports["inbound"], timeout=10) as client:
        client.ehlo("mx.recipient.test")
        client.mail(mail_from)
        code, answer = client.rcpt(rcpt)
        if code != 250:
            return code, answer
        return client.data(raw)


def _capture_on(client: TestClient, key: dict[str, str]) -> None:
    assert client.get("/v1/settings/replies", headers=key).json() == {"replies": "off"}
    put = client.put("/v1/settings/replies", json={"replies": "capture"}, headers=key)
    assert put.status_code == 200, put.text


def _events(env: MailEnv, cid: str) -> list[str]:
    """The outbox's events of the communication (written with its records)."""
    with env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(outbox_events.c.type).where(outbox_events.c.subject_id == cid)
        ).all()
    return [r.type for r in rows]


def test_a_reply_to_the_reply_address_is_kept_byte_for_byte_with_evidence_and_event(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    _capture_on(mail_client, mail_key)
    cid = _send(mail_client, mail_key)
    delivered = _delivered(mail_env, cid)
    reply_to = _reply_to(delivered)
    assert reply_to[0] == "service@acme.test"  # the sender still gets the answer
    assert reply_to[1].startswith(f"replies+{cid}.")
    assert reply_to[1].endswith("@bounces.sealpost.test")
    original = mail_client.get(f"/v1/communications/{cid}/original.eml", headers=mail_key)
    assert b"Reply-To:" in original.content  # what was sealed is what was sent

    c = mail_env.sp.communications.get(cid)
    assert c is not None
    raw = _reply(c.message_id)
    code, answer = _inbound(mail_env, BOB, reply_to[1], raw)
    assert code == 250, answer
    assert b"Reply received" in answer

    listed = mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()
    (item,) = listed["items"]
    assert item["sender"] == BOB
    assert item["automatic"] is False
    assert item["matched_by"] == "reply_address"
    assert item["sha256"] == hashlib.sha256(raw).hexdigest()
    got = mail_client.get(item["raw"], headers=mail_key)
    assert got.status_code == 200
    assert got.content == raw

    timeline = mail_env.sp.communications.timeline(mail_env.tenant_id, cid)
    entry = next(e for e in timeline if e.event == "ReplyReceived")
    record = entry.record
    line = summarize(entry)
    assert line.startswith(f"A reply giving its sender as {BOB} reached Sealpost at ")
    # anybody can write any From: the words say who connected, and that nothing proved it
    assert "from the server 127.0.0.1" in line and "not authenticated" in line
    assert record["event"]["uri"] == "urn:sealpost:event:ReplyReceived"
    assert record["content"]["sha256"] == item["sha256"]
    assert record["sender"]["address"] == BOB
    assert record["details"]["reply"]["in_reply_to"] == c.message_id
    assert "sealpost.communication.replied" in _events(mail_env, cid)

    again = _inbound(mail_env, BOB, reply_to[1], raw)  # a client that missed our 250
    assert again[0] == 250
    listed = mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()
    assert len(listed["items"]) == 1


@pytest.mark.parametrize(
    ("extra", "subject", "mail_from"),
    [
        ("Auto-Submitted: auto-replied\r\n", "Re: Your invoice 42 is overdue", BOB),
        ("Precedence: bulk\r\n", "Re: Your invoice 42 is overdue", BOB),
        ("", "Out of Office: Re: Your invoice 42 is overdue", BOB),
        ("", "Re: Your invoice 42 is overdue", ""),
    ],
    ids=["auto-submitted", "precedence", "vacation-subject", "null-return-path"],
)
def test_an_out_of_office_is_kept_but_is_no_reply(
    mail_env: MailEnv,
    mail_client: TestClient,
    mail_key: dict[str, str],
    extra: str,
    subject: str,
    mail_from: str,
) -> None:
    cid = _send(mail_client, mail_key, capture_replies=True)  # per message, tenant off
    address = _reply_to(_delivered(mail_env, cid))[1]
    c = mail_env.sp.communications.get(cid)
    assert c is not None
    raw = _reply(c.message_id, extra=extra, subject=subject)
    code, _ = _inbound(mail_env, mail_from, address, raw)
    assert code == 250
    (item,) = mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()["items"]
    assert item["automatic"] is True
    assert item["automatic_reason"]
    types = _events(mail_env, cid)
    assert "sealpost.communication.auto_replied" in types
    assert "sealpost.communication.replied" not in types


def test_without_capture_no_reply_to_is_added(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    cid = _send(mail_client, mail_key)
    assert _reply_to(_delivered(mail_env, cid)) == []


def test_a_reply_without_a_valid_tag_is_matched_by_in_reply_to_from_the_recipient_only(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    cid = _send(mail_client, mail_key, capture_replies=True)
    address = _reply_to(_delivered(mail_env, cid))[1]
    c = mail_env.sp.communications.get(cid)
    assert c is not None
    local, domain = address.split("@")
    forged = f"{local[:-16]}{'0' * 16}@{domain}"  # the tag, wrong
    assert forged != address

    stranger = _reply(c.message_id, sender="mallory@elsewhere.test")
    code, answer = _inbound(mail_env, "mallory@elsewhere.test", forged, stranger)
    assert code == 550 and b"5.1.1" in answer
    assert (
        mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()["items"] == []
    )

    code, _ = _inbound(mail_env, BOB, "replies@bounces.sealpost.test", _reply(c.message_id))
    assert code == 250
    (item,) = mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()["items"]
    assert item["matched_by"] == "in_reply_to"


def test_an_unknown_id_or_an_unmatched_reply_is_refused_and_nothing_is_kept(
    mail_env: MailEnv,
) -> None:
    unknown = mail_env.sp.reply_addresses.address(str(uuid.uuid4()))
    code, answer = _inbound(mail_env, BOB, unknown, _reply("<nothing@acme.test>"))
    assert code == 550 and b"5.1.1" in answer
    code, answer = _inbound(
        mail_env, BOB, "replies@bounces.sealpost.test", _reply("<nothing@acme.test>")
    )
    assert code == 550 and b"5.1.1" in answer
    with mail_env.sp.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(communication_replies)).scalar() == 0


def test_malformed_mime_is_kept_when_the_address_names_the_communication(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    cid = _send(mail_client, mail_key, capture_replies=True)
    address = _reply_to(_delivered(mail_env, cid))[1]
    broken = (
        f"From: {BOB}\r\nSubject: Re: invoice\r\n"
        'Content-Type: multipart/mixed; boundary="X"\r\n\r\nno boundary at all\r\n'
    ).encode()
    code, answer = _inbound(mail_env, BOB, "replies@bounces.sealpost.test", broken)
    assert code == 550 and b"5.6.0" in answer  # nothing names it: refused, nothing kept
    code, _ = _inbound(mail_env, BOB, address, broken)
    assert code == 250
    (item,) = mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()["items"]
    assert item["malformed"] is True
    assert mail_client.get(item["raw"], headers=mail_key).content == broken


@pytest.mark.parametrize("mail_overrides", [{"smtp_max_message_bytes": 20_000}])
def test_an_oversized_reply_is_refused_with_the_limit(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    cid = _send(mail_client, mail_key, capture_replies=True)
    address = _reply_to(_delivered(mail_env, cid))[1]
    c = mail_env.sp.communications.get(cid)
    assert c is not None
    big = _reply(c.message_id, body="x" * 70 + "\r\n" * 1 + ("y" * 76 + "\r\n") * 400)
    try:
        code, answer = _inbound(mail_env, BOB, address, big)
    except smtplib.SMTPResponseException as exc:
        code, answer = exc.smtp_code, exc.smtp_error
    assert code == 552, answer
    assert b"20000 bytes" in answer
    assert (
        mail_client.get(f"/v1/communications/{cid}/replies", headers=mail_key).json()["items"] == []
    )


def test_capture_replies_is_refused_for_a_pickup(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    answer = mail_client.post(
        "/v1/communications",
        json={
            "from": "service@acme.test",
            "to": [BOB],
            "text": "x",
            "delivery": "pickup",
            "capture_replies": True,
        },
        headers=mail_key,
    )
    assert answer.status_code == 422
    assert "capture_replies" in answer.json()["detail"]


def test_the_certified_mailer_port_captures_replies_when_asked(mail_env: MailEnv) -> None:
    cid = mail_env.sp.certified_mailer.send(
        tenant_id=mail_env.tenant_id,
        sender="service@acme.test",
        to=BOB,
        subject="Reminder 1",
        text="Please pay.",
        identification={"method": "sequence"},
        details={},
        reply_capture=True,
    )
    reply_to = _reply_to(_delivered(mail_env, cid))
    assert reply_to[1] == mail_env.sp.reply_addresses.address(cid)


def test_each_recipient_gets_its_own_reply_address_and_a_return_path_tag_is_no_reply_tag(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    answer = mail_client.post(
        "/v1/communications",
        json={
            "from": "service@acme.test",
            "to": [BOB, f"ann@{RECIPIENT_DOMAIN}"],
            "subject": "Two recipients",
            "text": "Hello",
            "capture_replies": True,
        },
        headers=mail_key,
    )
    assert answer.status_code == 201, answer.text
    ids = [c["id"] for c in answer.json()["communications"]]
    addresses = {_reply_to(_delivered(mail_env, cid))[1] for cid in ids}
    assert addresses == {mail_env.sp.reply_addresses.address(cid) for cid in ids}

    secret = b"k" * 32
    replies = ReplyAddresses(secret, "bounces.example")
    bounces = BounceAddresses(secret, "bounces.example")
    cid = str(uuid.uuid4())
    verp_tag = bounces.address(cid).split("@")[0].rsplit(".", 1)[1]
    assert replies.communication(f"replies+{cid}.{verp_tag}@bounces.example") is None
    assert replies.communication(replies.address(cid)) == cid


def test_another_tenant_reusing_a_message_id_neither_takes_nor_blocks_the_reply(
    mail_env: MailEnv,
) -> None:
    """Message-IDs are the sender's choice: another tenant may send one with the same
    Message-ID to someone else.  A reply by In-Reply-To from *our* recipient is ours; it goes
    neither to that tenant nor nowhere (refused)."""
    from sealpost.communications.email.submission import SubmissionRequest
    from tests.support.mail import make_message

    raw = make_message("Invoice 42", to=BOB)
    mine = mail_env.sp.submissions.accept(
        SubmissionRequest(
            tenant_id=mail_env.tenant_id,
            via="api",
            mail_from="service@acme.test",
            recipients=(BOB,),
            raw=raw,
            identification={"method": "test"},
        )
    ).communication_ids[0]
    other = mail_env.sp.tenants.create("globex")
    theirs = mail_env.sp.submissions.accept(
        SubmissionRequest(
            tenant_id=other.id,
            via="api",
            mail_from="service@acme.test",
            recipients=(f"eve@{RECIPIENT_DOMAIN}",),
            raw=raw,  # the same Message-ID, another recipient
            identification={"method": "test"},
        )
    ).communication_ids[0]
    c = mail_env.sp.communications.get(mine)
    assert c is not None
    code, answer = _inbound(mail_env, BOB, "replies@bounces.sealpost.test", _reply(c.message_id))
    assert code == 250, answer
    with mail_env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(communication_replies.c.communication_id, communication_replies.c.tenant_id)
        ).all()
    assert [tuple(r) for r in rows] == [(mine, mail_env.tenant_id)]
    assert theirs != mine


def test_the_certificate_says_sealpost_added_the_reply_to_and_names_the_senders_own_bytes(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], tmp_path: Path
) -> None:
    """With capture, original.eml is the message *with* the Reply-To Sealpost added: the
    sender's own copy (SMTP) does not hash to it, so the record states the sender's bytes'
    SHA-256 too and the certificate says which field was added, never "as submitted"."""
    from tests.certificates.support import poppler
    from tests.communications.tracking.test_open_click_tracking import issue_certificate
    from tests.support.mail import make_message, submit

    _capture_on(mail_client, mail_key)
    raw = make_message("Invoice 43", to=BOB)
    code, answer = submit(mail_env, raw, [BOB])
    assert code == 250, answer
    (c,) = mail_env.sp.communications.find_by_message_id("<Invoice-43@acme.test>")
    mail_env.wait_status(c.id, "delivered")
    acceptance = next(
        e.record
        for e in mail_env.sp.communications.timeline(mail_env.tenant_id, c.id)
        if e.event == "SubmissionAcceptance"
    )
    message = acceptance["details"]["message"]
    assert message["reply_capture"] is True
    assert message["submitted_sha256"] == hashlib.sha256(raw).hexdigest()
    assert acceptance["content"]["sha256"] != message["submitted_sha256"]

    path = tmp_path / "certificate.pdf"
    path.write_bytes(issue_certificate(mail_env, c.id))
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Sealpost added the Reply-To field" in text, text
    assert message["submitted_sha256"] in text.replace(" ", "") or (
        message["submitted_sha256"][:32] in text.replace(" ", "")
    )


def test_a_reply_to_a_code_email_seals_no_digest_of_its_parts(mail_env: MailEnv) -> None:
    """A reply to one of Sealpost's code emails may be just the code: its text part's SHA-256
    in a record the tenant reads would give the code away in a million tries.  As for the
    code email itself, the record keeps the whole message's digest only."""
    cid = mail_env.sp.certified_mailer.send(
        tenant_id=mail_env.tenant_id,
        sender="service@acme.test",
        to=BOB,
        subject="Your pickup code",
        text="Your code is 482913.",
        identification={"method": "pickup"},
        details={},
        access_secret=True,
    )
    c = mail_env.wait_status(cid, "delivered")
    raw = _reply(c.message_id, subject="Re: Your pickup code", body="482913\r\n")
    code, answer = _inbound(mail_env, BOB, "replies@bounces.sealpost.test", raw)
    assert code == 250, answer
    entry = next(
        e
        for e in mail_env.sp.communications.timeline(mail_env.tenant_id, cid)
        if e.event == "ReplyReceived"
    )
    content = entry.record["content"]
    assert content["sha256"] == hashlib.sha256(raw).hexdigest()
    assert not content.get("parts"), content
    code_digest = hashlib.sha256(b"482913\r\n").hexdigest()
    assert code_digest not in str(entry.record)
