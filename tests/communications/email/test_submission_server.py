"""The SMTP submission server: TLS before AUTH, lockout, limits, policy, byte-exact storage."""

from __future__ import annotations

import hashlib
import smtplib
import ssl

import pytest

from sealpost.communications.repository import Communication
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _rejections(env: MailEnv) -> list[dict[str, object]]:
    import json

    from sqlalchemy import select

    from sealpost.ledger.tables import evidence_records

    r = evidence_records.c
    with env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(r.canonical).where(
                r.tenant_id == env.tenant_id, r.event == "SubmissionRejection"
            )
        ).scalars()
        return [json.loads(bytes(row)) for row in rows]


def test_auth_is_refused_before_tls_and_not_even_offered(mail_env: MailEnv) -> None:
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.ehlo("crm.acme.test")
        assert not client.has_extn("auth")
        assert client.has_extn("starttls") and client.has_extn("pipelining")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        code, text = client.docmd("AUTH", "PLAIN AHVzZXIAcGFzcw==")
        assert code == 538 and b"Encryption required" in text
        code, _ = client.docmd("MAIL", "FROM:<service@acme.test>")
        assert code == 530  # no AUTH, no trusted network: no mail


def test_wrong_passwords_are_refused_then_the_address_is_locked_out(mail_env: MailEnv) -> None:
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.starttls(context=_tls())
        client.ehlo("crm.acme.test")
        client.user = mail_env.credential.username
        for _ in range(mail_env.sp.settings.smtp_auth_max_failures):
            client.password = "wrong password"  # one AUTH PLAIN attempt each
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.auth("PLAIN", client.auth_plain)
            assert refused.value.smtp_code == 535
        # even the right password is now refused for this IP, with a temporary code
        client.password = mail_env.credential.password
        with pytest.raises(smtplib.SMTPAuthenticationError) as locked:
            client.auth("PLAIN", client.auth_plain)
        assert locked.value.smtp_code == 454


def test_implicit_tls_port_accepts_authenticated_submission(mail_env: MailEnv) -> None:
    port = mail_env.sp.smtp_ports["tls"]
    with smtplib.SMTP_SSL("127.0.0.1", port, context=_tls(), timeout=10) as client:
        client.login(mail_env.credential.username, mail_env.credential.password)
        refused = client.sendmail(
            "service@acme.test", [f"tls@{RECIPIENT_DOMAIN}"], make_message("implicit tls")
        )
    assert refused == {}
    (sent,) = mail_env.sp.communications.search(mail_env.tenant_id)
    acceptance = mail_env.sp.communications.timeline(mail_env.tenant_id, sent.id)[0].record
    assert acceptance["details"]["smtp"]["tls"]["version"].startswith("TLSv1.")


def test_several_recipients_get_one_communication_each_named_in_the_reply(
    mail_env: MailEnv,
) -> None:
    rcpts = [f"r{n}@{RECIPIENT_DOMAIN}" for n in range(3)]
    code, reply = submit(mail_env, make_message("three recipients"), rcpts)
    assert code == 250
    lines = reply.decode().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("2.0.0 Ok: submission ")
    ids = [line.split()[1] for line in lines[:3]]
    for cid, rcpt in zip(ids, rcpts, strict=True):
        found = mail_env.wait_status(cid, "delivered")
        assert found.recipient == rcpt
    assert len({c.submission_id for c in map(mail_env.sp.communications.get, ids) if c}) == 1


@pytest.mark.parametrize("mail_overrides", [{"smtp_max_message_bytes": 4096}])
def test_oversize_message_gets_552_and_rejection_evidence(mail_env: MailEnv) -> None:
    big = make_message("big") + (b"X" * 70 + b"\r\n") * 200
    code, reply = submit(mail_env, big, [f"big@{RECIPIENT_DOMAIN}"])
    assert code == 552
    assert b"limit is 4096 bytes" in reply
    assert mail_env.sp.communications.search(mail_env.tenant_id) == []
    (rejection,) = _rejections(mail_env)
    assert rejection["reasons"][0]["code"] == "message-too-big"
    assert rejection["sender"]["identification"]["username"] == mail_env.credential.username
    # real clients announce the size at MAIL (SIZE=, RFC 1870): refused there, with evidence too
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.starttls(context=_tls())
        client.login(mail_env.credential.username, mail_env.credential.password)
        code, reply = client.mail("service@acme.test", options=["SIZE=100000"])
    assert code == 552 and b"limit is 4096 bytes" in reply
    assert len(_rejections(mail_env)) == 2


def test_malformed_mime_is_stored_byte_exact_and_delivered(mail_env: MailEnv) -> None:
    raw = (
        b"From: service@acme.test\r\nTo: m@recipient.test\r\nSubject: broken\r\n"
        b"Message-ID: <broken@acme.test>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"%%%% not base64 \xff\xfe\r\n"  # no closing boundary, 8-bit garbage
    )
    code, reply = submit(mail_env, raw, [f"m@{RECIPIENT_DOMAIN}"])
    assert code == 250
    cid = reply.decode().split("queued as ")[1]
    found: Communication = mail_env.wait_status(cid, "delivered")
    stored = mail_env.sp.contents.get(found.content_sha256)
    assert stored == raw and found.content_sha256 == hashlib.sha256(raw).hexdigest()
    assert mail_env.peer.received[0].data.endswith(raw)
    acceptance = mail_env.sp.communications.timeline(mail_env.tenant_id, cid)[0].record
    assert acceptance["details"]["message"]["mime_defects"]


def test_a_message_without_message_id_gets_one_that_is_kept_across_retries(
    mail_env: MailEnv,
) -> None:
    raw = b"From: service@acme.test\r\nTo: n@recipient.test\r\nSubject: no id\r\n\r\nhello\r\n"
    _, reply = submit(mail_env, raw, [f"n@{RECIPIENT_DOMAIN}"])
    found = mail_env.wait_status(reply.decode().split("queued as ")[1], "delivered")
    assert found.message_id.endswith("@sealpost.test>")
    assert mail_env.peer.received[0].message_id == found.message_id
    assert mail_env.sp.contents.get(found.content_sha256) == raw  # evidence keeps the bytes


def test_a_trusted_relay_network_submits_without_auth(mail_env: MailEnv) -> None:
    mail_env.sp.senders.add_network(mail_env.tenant_id, "127.0.0.1/32")
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.ehlo("mta.acme.test")
        client.mail("service@acme.test")
        client.rcpt(f"relay@{RECIPIENT_DOMAIN}")
        code, reply = client.data(make_message("relay"))
    assert code == 250
    cid = reply.decode().split("queued as ")[1]
    acceptance = mail_env.sp.communications.timeline(mail_env.tenant_id, cid)[0].record
    assert acceptance["sender"]["identification"]["method"] == "relay-network"
    assert acceptance["details"]["smtp"]["helo"] == "mta.acme.test"


def test_a_tenant_with_registered_domains_may_only_send_from_them(mail_env: MailEnv) -> None:
    from sealpost.communications.email.dkim import generate_dkim_key

    key, record = generate_dkim_key()
    mail_env.sp.senders.add_domain(
        mail_env.tenant_id, "acme.test", selector="sp", private_key_pem=key, public_record=record
    )
    spoofed = make_message("spoof").replace(
        b"From: Acme Service <service@acme.test>", b"From: ceo@elsewhere.test"
    )
    code, reply = submit(mail_env, spoofed, [f"p@{RECIPIENT_DOMAIN}"])
    assert code == 550 and b"From must be an address of acme.test" in reply
    two_froms = make_message("two").replace(
        b"From: Acme Service <service@acme.test>",
        b"From: service@acme.test, ceo@bank.example",
    )
    code, _ = submit(mail_env, two_froms, [f"p@{RECIPIENT_DOMAIN}"])
    assert code == 550  # a second author could be anybody
    assert _rejections(mail_env)[0]["reasons"][0]["code"] == "policy"
    # mail From the registered domain goes out DKIM-signed by Sealpost for that domain
    _, reply = submit(mail_env, make_message("signed"), [f"s@{RECIPIENT_DOMAIN}"])
    mail_env.wait_status(reply.decode().split("queued as ")[1], "delivered")
    delivered = mail_env.peer.received[-1].data
    assert delivered.startswith(b"DKIM-Signature:") and b"d=acme.test" in delivered[:600]

    from sealpost.communications.email.dkim import pinned_key_lookup, verify_message

    result = verify_message(
        delivered, key_lookup=pinned_key_lookup({("sp", "acme.test"): record}, None)
    )
    assert result.valid and result.domain == "acme.test", result.reason


@pytest.mark.parametrize("mail_overrides", [{"content_inline_max_bytes": 2048}])
def test_small_messages_live_in_the_database_and_large_ones_in_blob_files(
    mail_env: MailEnv,
) -> None:
    small = make_message("small")
    large = make_message("large") + (b"L" * 70 + b"\r\n") * 100
    assert len(small) <= 2048 < len(large)
    ids = []
    for raw, rcpt in ((small, "small"), (large, "large")):
        _, reply = submit(mail_env, raw, [f"{rcpt}@{RECIPIENT_DOMAIN}"])
        ids.append(reply.decode().split("queued as ")[1])
    found = [mail_env.wait_status(cid, "delivered") for cid in ids]
    assert not mail_env.sp.blobs.exists(found[0].content_sha256)
    assert mail_env.sp.blobs.exists(found[1].content_sha256)
    assert [mail_env.sp.contents.get(c.content_sha256) for c in found] == [small, large]
    assert [
        r.data.endswith(raw) for r, raw in zip(mail_env.peer.received, (small, large), strict=True)
    ] == [True, True]


def test_a_revoked_credential_is_refused(mail_env: MailEnv) -> None:
    _, reply = submit(mail_env, make_message("before revocation"), [f"r@{RECIPIENT_DOMAIN}"])
    assert reply.startswith(b"2.0.0 Ok")
    mail_env.sp.senders.revoke_smtp_credential(mail_env.credential.username)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(mail_env, make_message("after revocation"), [f"r@{RECIPIENT_DOMAIN}"])
