"""The inbound port: late bounces (DSN) and certify addresses with DKIM, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.communications.email.dkim import generate_dkim_key, sign_message
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit


def dsn(recipient: str, message_id: str) -> bytes:
    """A Postfix-shaped RFC 3464 bounce for ``recipient``."""
    return (
        "From: MAILER-DAEMON@mx.recipient.test (Mail Delivery System)\r\n"
        "To: bounces@bounces.sealpost.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.recipient.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <mailbox unavailable>: user unknown\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {message_id}\r\nSubject: x\r\n"
        "\r\n--B--\r\n"
    ).encode()


def send_inbound(
    env: MailEnv, mail_from: str, rcpt: str, raw: bytes, *, source: str = "127.0.0.1"
) -> tuple[int, bytes]:
    with smtplib.SMTP(
        "127.0.0.1", env.sp.smtp_ports["inbound"], timeout=10, source_address=(source, 0)
    ) as client:
        client.ehlo("mx.recipient.test")
        client.mail(mail_from)
        code, reply = client.rcpt(rcpt)
        if code != 250:
            return code, reply
        return client.data(raw)


def _cli_env(env: MailEnv) -> dict[str, str]:
    s = env.sp.settings
    return {
        **os.environ,
        "SEALPOST_DATABASE_URL": s.resolved_database_url,
        "SEALPOST_DATA_DIR": str(s.data_dir),
        "SEALPOST_KEYS_DIR": str(s.resolved_keys_dir),
        "SEALPOST_LOG_LEVEL": "WARNING",
    }


def test_a_bounce_after_delivery_supersedes_the_first_certificate(
    mail_env: MailEnv, tmp_path: Path
) -> None:
    rcpt = f"gone@{RECIPIENT_DOMAIN}"
    _, reply = submit(mail_env, make_message("late bounce"), [rcpt])
    cid = reply.decode().split("queued as ")[1]
    first = mail_env.wait_certificate(cid, 1)
    assert first.status == "delivered"
    v1 = mail_env.sp.certificates.latest(first)

    verp = mail_env.peer.received[0].mail_from
    code, _ = send_inbound(mail_env, "<>", verp, dsn(rcpt, "<late-bounce@acme.test>"))
    assert code == 250
    failed = mail_env.wait_status(cid, "failed")
    assert failed.last_reply == "550 5.1.1 <mailbox unavailable>: user unknown"
    events = [e.event for e in mail_env.sp.communications.timeline(mail_env.tenant_id, cid)]
    assert events.index("NonDelivery") > events.index("RelayToNonERDS")

    second = mail_env.wait_certificate(cid, 2)
    v2 = mail_env.sp.certificates.latest(second)
    report = verify_certificate_pdf(v2, trust_roots=mail_env.sp.trust_roots)
    assert report.ok, report.failures
    assert report.version == 2
    versions = mail_env.sp.communications.certificates(cid)
    assert report.supersedes_sha256 == versions[0].sha256
    assert "CertificateIssued" in [e["event"] for e in report.manifest["events"]]  # type: ignore[index]

    old = tmp_path / "v1.pdf"
    old.write_bytes(v1)
    root = mail_env.sp.settings.resolved_keys_dir / "root-ca.pem"
    sealpost_cli = str(Path(sys.executable).parent / "sealpost")
    run = subprocess.run(
        [sealpost_cli, "verify", str(old), "--trust", str(root), "--json"],
        capture_output=True,
        text=True,
        env=_cli_env(mail_env),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    verdict = json.loads(run.stdout)
    assert verdict["valid"] is True
    assert verdict["superseded"]["superseded_by"]["version"] == 2
    assert verdict["superseded"]["superseded_by"]["sha256"] == versions[1].sha256


def test_a_bounce_without_verp_is_matched_by_message_id(mail_env: MailEnv) -> None:
    rcpt = f"old@{RECIPIENT_DOMAIN}"
    _, reply = submit(mail_env, make_message("matched by id"), [rcpt])
    cid = reply.decode().split("queued as ")[1]
    mail_env.wait_status(cid, "delivered")
    code, _ = send_inbound(
        mail_env, "<>", "bounces@bounces.sealpost.test", dsn(rcpt, "<matched-by-id@acme.test>")
    )
    assert code == 250
    mail_env.wait_status(cid, "failed")


def test_the_inbound_port_is_no_open_relay(mail_env: MailEnv) -> None:
    code, reply = send_inbound(mail_env, "spam@evil.test", "victim@recipient.test", b"x")
    assert code == 550 and b"Relaying denied" in reply
    with smtplib.SMTP("127.0.0.1", mail_env.sp.smtp_ports["inbound"], timeout=10) as client:
        client.ehlo("mx.elsewhere.test")
        assert client.has_extn("starttls")  # offered to MTAs, never required


def _tenant_signer(env: MailEnv) -> bytes:
    """The tenant's own mail server key, pinned for acme.test; returns its private key."""
    sealpost_key, sealpost_record = generate_dkim_key()
    env.sp.senders.add_domain(
        env.tenant_id,
        "acme.test",
        selector="sealpost",
        private_key_pem=sealpost_key,
        public_record=sealpost_record,
    )
    own_key, own_record = generate_dkim_key()
    env.sp.senders.pin_key("acme.test", "mail", own_record)
    return own_key


def test_a_certify_address_with_a_valid_dkim_signature_is_certified_and_delivered(
    mail_env: MailEnv,
) -> None:
    key = _tenant_signer(mail_env)
    raw = make_message("from thunderbird", to=f"zoe@{RECIPIENT_DOMAIN}.certify.sealpost.test")
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=key) + raw
    code, reply = send_inbound(
        mail_env, "service@acme.test", f"zoe@{RECIPIENT_DOMAIN}.certify.sealpost.test", signed
    )
    assert code == 250, reply
    cid = reply.decode().split("queued as ")[1]
    delivered = mail_env.wait_status(cid, "delivered")
    assert delivered.recipient == f"zoe@{RECIPIENT_DOMAIN}" and delivered.via == "rewrite"
    assert mail_env.peer.received[0].rcpt_tos == [f"zoe@{RECIPIENT_DOMAIN}"]
    acceptance = mail_env.sp.communications.timeline(mail_env.tenant_id, cid)[0].record
    assert acceptance["sender"]["identification"] == {
        "method": "dkim",
        "domain": "acme.test",
        "selector": "mail",
        "envelope_from": "service@acme.test",
    }


def test_a_certify_address_without_a_valid_signature_is_refused_with_evidence(
    mail_env: MailEnv,
) -> None:
    key = _tenant_signer(mail_env)
    raw = make_message("tampered", to=f"zed@{RECIPIENT_DOMAIN}.certify.sealpost.test")
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=key)
    tampered = signed + raw.replace(b"2027-01-31", b"2099-01-31")
    code, reply = send_inbound(
        mail_env, "service@acme.test", f"zed@{RECIPIENT_DOMAIN}.certify.sealpost.test", tampered
    )
    assert code == 550 and b"DKIM" in reply
    assert mail_env.sp.communications.search(mail_env.tenant_id) == []
    code, _ = send_inbound(
        mail_env, "service@acme.test", f"zed@{RECIPIENT_DOMAIN}.certify.sealpost.test", raw
    )
    assert code == 550
    from sqlalchemy import func, select

    from sealpost.ledger.tables import evidence_records

    with mail_env.sp.engine.connect() as conn:
        refusals = conn.execute(
            select(func.count()).where(
                evidence_records.c.tenant_id == mail_env.tenant_id,
                evidence_records.c.event == "SubmissionRejection",
            )
        ).scalar_one()
    assert refusals == 2


def test_certify_in_bcc_certifies_the_message_for_its_to_and_cc(mail_env: MailEnv) -> None:
    key = _tenant_signer(mail_env)
    raw = make_message("bcc form", to=f"uma@{RECIPIENT_DOMAIN}").replace(
        b"To: uma@recipient.test\r\n", b"To: uma@recipient.test\r\nCc: vic@recipient.test\r\n"
    )
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=key) + raw
    code, reply = send_inbound(
        mail_env, "service@acme.test", "certify@certify.sealpost.test", signed
    )
    assert code == 250, reply
    ids = [line.split()[1] for line in reply.decode().splitlines()[:-1]]
    delivered = sorted(mail_env.wait_status(cid, "delivered").recipient for cid in ids)
    assert delivered == [f"uma@{RECIPIENT_DOMAIN}", f"vic@{RECIPIENT_DOMAIN}"]


def test_a_forged_bounce_cannot_undo_a_delivery(mail_env: MailEnv) -> None:
    """The recipient sees the return path; a DSN not from the accepting server changes nothing."""
    rcpt = f"debtor@{RECIPIENT_DOMAIN}"
    _, reply = submit(mail_env, make_message("payment reminder"), [rcpt])
    cid = reply.decode().split("queued as ")[1]
    mail_env.wait_status(cid, "delivered")
    verp = mail_env.peer.received[0].mail_from
    forged = dsn(rcpt, "<payment-reminder@acme.test>")
    code, _ = send_inbound(mail_env, "<>", verp, forged, source="127.0.0.2")
    assert code == 250  # taken, so the sender learns nothing, but not believed
    time.sleep(0.5)
    assert mail_env.sp.communications.get(cid).status == "delivered"  # type: ignore[union-attr]
    tag = verp.split("@")[0].split(".")[1]
    guessed = verp.replace(tag, "0" * len(tag))  # a tag that does not match
    code, _ = send_inbound(mail_env, "<>", guessed, forged)
    assert code == 550


def test_a_bounce_by_message_id_touches_only_the_failed_recipient(mail_env: MailEnv) -> None:
    rcpts = [f"{name}@{RECIPIENT_DOMAIN}" for name in ("b", "c", "d")]
    _, reply = submit(mail_env, make_message("shared id"), rcpts)
    ids = [line.split()[1] for line in reply.decode().splitlines()[:-1]]
    for cid in ids:
        mail_env.wait_status(cid, "delivered")
    plain = "bounces@bounces.sealpost.test"
    code, _ = send_inbound(mail_env, "<>", plain, dsn(rcpts[0], "<shared-id@acme.test>"))
    assert code == 250
    mail_env.wait_status(ids[0], "failed")
    statuses = [mail_env.sp.communications.get(cid).status for cid in ids]  # type: ignore[union-attr]
    assert statuses == ["failed", "delivered", "delivered"]


def test_a_bounce_by_message_id_shared_by_two_tenants_changes_nothing(mail_env: MailEnv) -> None:
    from sealpost.communications.email.submission import SubmissionRequest

    rcpt = f"e@{RECIPIENT_DOMAIN}"
    _, reply = submit(mail_env, make_message("two tenants"), [rcpt])
    ours = reply.decode().split("queued as ")[1]
    other = mail_env.sp.tenants.create("Other tenant")
    theirs = mail_env.sp.submissions.accept(
        SubmissionRequest(
            tenant_id=other.id,
            via="api",
            mail_from="x@other.test",
            recipients=(rcpt,),
            raw=make_message("two tenants"),  # same Message-ID, chosen by the client
            identification={"method": "api-key"},
        )
    ).communication_ids[0]
    for cid in (ours, theirs):
        mail_env.wait_status(cid, "delivered")
    plain = "bounces@bounces.sealpost.test"
    code, _ = send_inbound(mail_env, "<>", plain, dsn(rcpt, "<two-tenants@acme.test>"))
    assert code == 250
    time.sleep(0.5)
    for cid in (ours, theirs):
        assert mail_env.sp.communications.get(cid).status == "delivered"  # type: ignore[union-attr]


def test_a_signed_message_replayed_elsewhere_is_not_certified(mail_env: MailEnv) -> None:
    key = _tenant_signer(mail_env)
    certify = f"@{RECIPIENT_DOMAIN}.certify.sealpost.test"
    raw = make_message("newsletter", to=f"bob{certify}")
    signed = sign_message(raw, domain="acme.test", selector="mail", private_key_pem=key) + raw
    code, reply = send_inbound(mail_env, "service@acme.test", f"bob{certify}", signed)
    assert code == 250, reply
    # the same signed bytes again: already certified, nothing new is created
    code, reply = send_inbound(mail_env, "service@acme.test", f"bob{certify}", signed)
    assert code == 250 and b"Already certified" in reply
    # ... or towards someone the signed headers do not name
    code, reply = send_inbound(mail_env, "service@acme.test", f"victim{certify}", signed)
    assert code == 550 and b"not among the signed To/Cc" in reply
    assert len(mail_env.sp.communications.search(mail_env.tenant_id)) == 1
    # an old message, even correctly signed, is not certified now
    old = raw.replace(b"Date: ", b"X-Old-Date: ").replace(
        b"Subject:", b"Date: Mon, 02 Jan 2023 10:00:00 +0000\r\nSubject:", 1
    )
    old_signed = sign_message(old, domain="acme.test", selector="mail", private_key_pem=key) + old
    code, reply = send_inbound(mail_env, "service@acme.test", f"bob{certify}", old_signed)
    assert code == 550 and b"not recent" in reply
