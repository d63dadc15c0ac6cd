"""Hostile header content over real SMTP and the raw API, on SQLite and PostgreSQL.

A message whose content cannot be certified (a NUL in a header, a Subject that decodes to a
NUL, a Message-ID longer than a line) is refused for good, 554 5.6.0 / 422, with
SubmissionRejection evidence; it used to answer 451 forever on PostgreSQL, which refuses NUL
in text.  Unicode line separators and malformed encoded words are text like any other: taken,
delivered, certified.  A NUL in the body is stored as bytes like everything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import smtplib
import ssl
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.communications.email.dkim import sign_message
from sealpost.ledger.tables import evidence_records
from tests.communications.email.test_inbound import _tenant_signer, dsn, send_inbound
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit


def _with_header(raw: bytes, field: bytes) -> bytes:
    """``raw`` with the header named like ``field`` replaced by ``field`` (CRLF message)."""
    name = field.split(b":", 1)[0].rstrip() + b":"
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert any(line.startswith(name) for line in lines), name
    lines = [field if line.startswith(name) else line for line in lines]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _rejections(env: MailEnv) -> list[dict[str, Any]]:
    r = evidence_records.c
    with env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(r.canonical)
            .where(r.tenant_id == env.tenant_id, r.event == "SubmissionRejection")
            .order_by(r.seq)
        ).scalars()
        return [json.loads(bytes(row)) for row in rows]


_LONG_ID = b"\r\n ".join(secrets.token_hex(400).encode() for _ in range(6))

REFUSED = {
    "NUL in the Subject": b"Subject: Invoice\x00 paid in full",
    "NUL in a display name": b'From: "Acme\x00 Bank" <service@acme.test>',
    "encoded NUL in the Subject": b"Subject: =?utf-8?q?Invoice=00_paid?=",
    "encoded NUL in a display name": b"From: =?utf-8?q?Acme=00Bank?= <service@acme.test>",
    "Message-ID longer than a line": b"Message-ID: <" + _LONG_ID + b"@acme.test>",
}


def test_content_that_cannot_be_certified_is_refused_for_good_with_evidence(
    mail_env: MailEnv,
) -> None:
    rcpt = f"nul@{RECIPIENT_DOMAIN}"
    sent = {}
    for case, field in REFUSED.items():
        raw = _with_header(make_message(case), field)
        code, reply = submit(mail_env, raw, [rcpt])
        assert (code, reply[:6]) == (554, b"5.6.0 "), (case, code, reply)
        sent[case] = raw
    # a retry is refused the same way: permanent, not the 451 of a server fault
    code, _ = submit(mail_env, sent["NUL in the Subject"], [rcpt])
    assert code == 554
    assert mail_env.sp.communications.search(mail_env.tenant_id) == []
    rejections = _rejections(mail_env)
    assert len(rejections) == len(REFUSED) + 1
    for (case, raw), record in zip(sent.items(), rejections, strict=False):
        assert record["event"]["uri"] == "http://uri.etsi.org/19522/Event/SubmissionRejection"
        (reason,) = record["reasons"]
        assert reason["code"] == "content" and reason["text"].startswith("554 5.6.0 "), case
        assert record["content"]["sha256"] == hashlib.sha256(raw).hexdigest(), case
        assert record["sender"]["identification"]["username"] == mail_env.credential.username
        assert record["details"]["recipients"] == [rcpt]


ACCEPTED = {
    "line separators in the Subject": (
        "Subject: Line\u2028separator\u2029paragraph\u0085next".encode(),
        "Line\u2028separator\u2029paragraph\u0085next",
    ),
    "line separators in a display name": (
        'From: "Acme\u2028Bank\u0085" <service@acme.test>'.encode(),
        None,
    ),
    "encoded line separator": (b"Subject: =?utf-8?b?YeKAqGI=?=", "a\u2028b"),
    "undecodable encoded word": (b"Subject: =?utf-8?b?/w==?=", "\ufffd"),
    "unknown charset": (b"Subject: =?x-unknown?q?abc?=", "abc"),
    "unterminated encoded word": (b"Subject: =?utf-8?q?abc", "=?utf-8?q?abc"),
    "encoded CRLF and a fake field": (
        b"Subject: =?utf-8?q?a=0D=0ABcc:_eve@evil.test?=",
        "a\r\nBcc: eve@evil.test",
    ),
}


def test_line_separators_and_malformed_encoded_words_are_delivered_and_certified(
    mail_env: MailEnv,
) -> None:
    ids = {}
    for n, (case, (field, _)) in enumerate(ACCEPTED.items()):
        raw = _with_header(make_message(f"odd {n}"), field)
        code, reply = submit(mail_env, raw, [f"odd{n}@{RECIPIENT_DOMAIN}"])
        assert code == 250, (case, code, reply)
        ids[case] = (reply.decode().split("queued as ")[1], raw)
    for case, (cid, raw) in ids.items():
        delivered = mail_env.wait_status(cid, "delivered")
        expected = ACCEPTED[case][1]
        if expected is not None:
            assert delivered.subject == expected, case
        assert mail_env.sp.contents.get(delivered.content_sha256) == raw
        mail_env.wait_certificate(cid)
        pdf = mail_env.sp.certificates.latest(delivered)
        report = verify_certificate_pdf(pdf, trust_roots=mail_env.sp.trust_roots)
        assert report.ok, (case, report.failures)
        assert report.attachments["original.eml"] == raw
    assert _rejections(mail_env) == []


def test_a_nul_in_the_body_is_stored_as_bytes_and_delivered(mail_env: MailEnv) -> None:
    raw = make_message("binary body") + b"a NUL \x00 in the body\r\n"
    code, reply = submit(mail_env, raw, [f"body@{RECIPIENT_DOMAIN}"])
    assert code == 250
    found = mail_env.wait_status(reply.decode().split("queued as ")[1], "delivered")
    assert mail_env.sp.contents.get(found.content_sha256) == raw
    assert mail_env.peer.received[0].data.endswith(raw)


def _post_raw(client: TestClient, key: dict[str, str], raw: bytes) -> Any:
    body = {"raw": base64.b64encode(raw).decode(), "recipients": [f"api@{RECIPIENT_DOMAIN}"]}
    return client.post("/v1/communications", json=body, headers=key)


def test_the_raw_api_refuses_the_same_content_with_a_422_and_evidence(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    for case, field in REFUSED.items():
        raw = _with_header(make_message(case), field)
        response = _post_raw(mail_client, mail_key, raw)
        assert response.status_code == 422, (case, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["type"] == "urn:sealpost:problem:content_refused", case
    rejections = _rejections(mail_env)
    assert len(rejections) == len(REFUSED)
    assert {r["reasons"][0]["code"] for r in rejections} == {"content"}
    assert {r["sender"]["identification"]["method"] for r in rejections} == {"api-key"}
    assert mail_env.sp.communications.search(mail_env.tenant_id) == []
    # line separators are text: the raw form takes them
    raw = _with_header(make_message("u2028"), ACCEPTED["line separators in the Subject"][0])
    created = _post_raw(mail_client, mail_key, raw)
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Line\u2028separator"),
        ("subject", "Paragraph\u2029separator"),
        ("subject", "Next\u0085line"),
        ("from", "Acme\u2028Bank <service@acme.test>"),
    ],
)
def test_the_parts_form_refuses_line_separators_with_a_422_naming_the_field(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], field: str, value: str
) -> None:
    body = {
        "from": "service@acme.test",
        "to": [f"parts@{RECIPIENT_DOMAIN}"],
        "subject": "fine",
        "text": "hello",
        field: value,
    }
    response = mail_client.post("/v1/communications", json=body, headers=mail_key)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field], problem
    separator = next(c for c in value if c in "\u2028\u2029\u0085")
    assert f"U+{ord(separator):04X}" in problem["errors"][0]["reason"]  # names the character


@pytest.mark.parametrize("replies", [["550 5.1.1 no\x00such user"]])
def test_a_nul_in_the_recipient_servers_reply_is_non_delivery_not_a_stuck_attempt(
    mail_env: MailEnv,
) -> None:
    code, reply = submit(mail_env, make_message("nul reply"), [f"gone@{RECIPIENT_DOMAIN}"])
    assert code == 250
    cid = reply.decode().split("queued as ")[1]
    failed = mail_env.wait_status(cid, "failed")
    assert failed.last_reply == "550 5.1.1 no\ufffdsuch user"  # the column holds no NUL
    non_delivery = mail_env.sp.communications.timeline(mail_env.tenant_id, cid)[1].record
    assert non_delivery["reasons"][0]["text"] == "550 5.1.1 no\x00such user"  # exact in evidence


def test_a_nul_in_the_envelope_sender_is_a_malformed_address(mail_env: MailEnv) -> None:
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.starttls(context=_tls())
        client.login(mail_env.credential.username, mail_env.credential.password)
        code, reply = client.mail("service\x00@acme.test")
        assert (code, reply[:6]) == (553, b"5.1.3 ")
        # the session goes on: a good sender is taken, and so is the message
        assert client.mail("service@acme.test")[0] == 250
        assert client.rcpt(f"env@{RECIPIENT_DOMAIN}")[0] == 250
        raw = make_message("no From header").replace(
            b"From: Acme Service <service@acme.test>\r\n", b""
        )
        assert client.data(raw)[0] == 250


def test_the_certify_address_refuses_the_same_content_with_evidence(mail_env: MailEnv) -> None:
    key = _tenant_signer(mail_env)
    rcpt = f"nul@{RECIPIENT_DOMAIN}.certify.sealpost.test"
    raw = _with_header(make_message("signed nul", to=rcpt), REFUSED["NUL in the Subject"])
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=key) + raw
    code, reply = send_inbound(mail_env, "service@acme.test", rcpt, signed)
    assert (code, reply[:6]) == (554, b"5.6.0 "), reply
    (rejection,) = _rejections(mail_env)
    assert rejection["reasons"][0]["code"] == "content"
    assert rejection["sender"]["identification"]["method"] == "dkim"


def test_a_hostile_bounce_with_nul_characters_is_taken_not_deferred(mail_env: MailEnv) -> None:
    rcpt = f"bounced@{RECIPIENT_DOMAIN}"
    _, reply = submit(mail_env, make_message("bounced later"), [rcpt])
    cid = reply.decode().split("queued as ")[1]
    mail_env.wait_status(cid, "delivered")
    bounces = "bounces@bounces.sealpost.test"
    code, _ = send_inbound(mail_env, "<>", bounces, dsn(rcpt, "<bounced\x00later@acme.test>"))
    assert code == 250  # no Message-ID holds a NUL: nothing matched, nothing to retry
    assert mail_env.sp.communications.get(cid).status == "delivered"  # type: ignore[union-attr]
    report = dsn(rcpt, "<bounced-later@acme.test>").replace(b"user unknown", b"user\x00unknown")
    code, _ = send_inbound(mail_env, "<>", bounces, report)
    assert code == 250
    failed = mail_env.wait_status(cid, "failed")
    assert failed.last_reply is not None and "\x00" not in failed.last_reply
