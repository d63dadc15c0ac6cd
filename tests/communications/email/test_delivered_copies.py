"""What each recipient's server gets: no Bcc, CRLF, both digests in evidence and certificate.

Regressions of issue 12: a ``Bcc:`` header of a raw API or SMTP submission used to reach
every recipient; a bare-LF message was certified as received but delivered with CRLF, and the
evidence named the digest of bytes no server received.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from email import message_from_bytes
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.communications.email.mime import header_section
from tests.certificates.support import poppler
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, submit
from tests.support.smtp_peer import Received

TO, CC = f"to@{RECIPIENT_DOMAIN}", f"cc@{RECIPIENT_DOMAIN}"
HIDDEN = (f"hidden1@{RECIPIENT_DOMAIN}", f"hidden2@{RECIPIENT_DOMAIN}")


def _message(subject: str, linesep: bytes = b"\r\n") -> bytes:
    lines = [
        b"From: Acme Service <service@acme.test>",
        f"To: {TO}".encode(),
        f"Cc: {CC}".encode(),
        f"Bcc: {HIDDEN[0]},".encode(),  # folded over two lines, as clients write long fields
        f"  {HIDDEN[1]}".encode(),
        f"Subject: {subject}".encode(),
        f"Message-ID: <{subject.replace(' ', '-')}@acme.test>".encode(),
        b"Date: Sun, 06 Dec 2026 10:00:00 +0000",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"",
        b"Your claim was accepted.",
        b"bcc: this line of the body is not a header and stays",
    ]
    return linesep.join(lines) + linesep


def _copies(env: MailEnv, count: int, timeout: float = 20.0) -> dict[str, Received]:
    """The copies the recipient server accepted, by envelope recipient, once all arrived."""
    deadline = time.monotonic() + timeout
    while len(env.peer.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    got = {r.rcpt_tos[0]: r for r in env.peer.received}
    assert len(got) == count, sorted(got)
    return got


def _assert_no_bcc_shown(copies: dict[str, Received]) -> None:
    for rcpt, copy in copies.items():
        head = header_section(copy.data)
        assert re.search(rb"(?im)^(resent-)?bcc[ \t]*:", head) is None, rcpt
        assert message_from_bytes(copy.data).get_all("Bcc") is None, rcpt
        others = [h for h in HIDDEN if h != rcpt]
        assert not any(h.encode() in copy.data for h in others), rcpt
        assert b"bcc: this line of the body" in copy.data  # the body is untouched


def _records(env: MailEnv, cid: str) -> dict[str, dict[str, Any]]:
    return {e.event: e.record for e in env.sp.communications.timeline(env.tenant_id, cid)}


def test_smtp_bcc_is_removed_from_every_delivered_copy_and_kept_in_the_original(
    mail_env: MailEnv,
) -> None:
    raw = _message("smtp bcc")
    code, reply = submit(mail_env, raw, [TO, CC, *HIDDEN])
    assert code == 250
    ids = [line.split()[1] for line in reply.decode().splitlines()[:4]]
    for cid in ids:
        mail_env.wait_status(cid, "delivered")
    copies = _copies(mail_env, 4)
    assert set(copies) == {TO, CC, *HIDDEN}  # the blind copies still reach their recipients
    _assert_no_bcc_shown(copies)
    for cid in ids:
        c = mail_env.sp.communications.get(cid)
        assert c is not None
        stored = mail_env.sp.contents.get(c.content_sha256)
        assert stored == raw and b"Bcc: hidden1@" in stored  # the original keeps it
        records = _records(mail_env, cid)
        note = records["SubmissionAcceptance"]["details"]["message"]["delivered_copies"]
        assert note["bcc_fields_removed"] == 1 and "line_ends_converted" not in note
        assert "Bcc field included" in note["digests"] and "without the Bcc" in note["digests"]
        details = records["RelayToNonERDS"]["details"]
        assert details["received_sha256"] == hashlib.sha256(raw).hexdigest()
        assert details["delivered_sha256"] == hashlib.sha256(copies[c.recipient].data).hexdigest()
        assert details["delivered_size"] == len(copies[c.recipient].data)
        assert details["delivered_changes"] == {
            "fields_added": ["Received", "X-Sealpost-Communication"],
            "bcc_fields_removed": 1,
        }


def test_raw_api_bcc_recipients_get_it_and_nobody_sees_them(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    raw = _message("api bcc")
    body = {"raw": base64.b64encode(raw).decode()}  # recipients: To, Cc and Bcc by default
    response = mail_client.post("/v1/communications", json=body, headers=mail_key)
    assert response.status_code == 201, response.text
    sent = response.json()["communications"]
    assert sorted(c["recipient"] for c in sent) == sorted([TO, CC, *HIDDEN])
    for c in sent:
        mail_env.wait_status(c["id"], "delivered")
    copies = _copies(mail_env, 4)
    _assert_no_bcc_shown(copies)
    original = mail_client.get(f"/v1/communications/{sent[0]['id']}/original.eml", headers=mail_key)
    assert original.content == raw


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", path, "-")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_bare_lf_message_is_certified_with_both_digests_in_plain_words(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], tmp_path: Path
) -> None:
    raw = _message("bare lf", linesep=b"\n")
    body = {"raw": base64.b64encode(raw).decode(), "recipients": [TO]}
    response = mail_client.post("/v1/communications", json=body, headers=mail_key)
    assert response.status_code == 201, response.text
    cid = response.json()["communications"][0]["id"]
    mail_env.wait_status(cid, "delivered")
    (got,) = mail_env.peer.received
    received, delivered = hashlib.sha256(raw).hexdigest(), hashlib.sha256(got.data).hexdigest()
    assert received != delivered
    assert b"\r\n" in got.data and re.search(rb"[^\r]\n", got.data) is None  # CRLF on the wire

    records = _records(mail_env, cid)
    assert records["SubmissionAcceptance"]["content"]["sha256"] == received
    note = records["SubmissionAcceptance"]["details"]["message"]["delivered_copies"]
    assert note["line_ends_converted"] is True
    details = records["RelayToNonERDS"]["details"]
    assert (details["received_sha256"], details["delivered_sha256"]) == (received, delivered)
    assert details["delivered_changes"]["line_ends_converted"] is True

    mail_env.wait_certificate(cid)
    pdf = mail_client.get(f"/v1/communications/{cid}/certificate.pdf", headers=mail_key).content
    text = " ".join(_pdf_text(pdf, tmp_path).split())
    assert f"Received SHA-256 {received}" in text
    assert f"Delivered SHA-256 {delivered}" in text
    assert "Received: the message as submitted to Sealpost" in text
    assert "Delivered: the copy as transmitted to 127.0.0.1" in text
    assert "converted bare LF or CR line ends to CRLF" in text
    assert "removed one Bcc field" in text
    report = verify_certificate_pdf(pdf, trust_roots=mail_env.sp.trust_roots)
    assert report.ok, report.failures
    assert report.attachments["original.eml"] == raw
    (check,) = [c for c in report.checks if c.name == "delivered digest"]
    assert check.ok and delivered in check.detail


def test_a_crlf_message_is_transmitted_as_stored_under_the_added_fields(
    mail_env: MailEnv,
) -> None:
    raw = _message("plain crlf").replace(b"Bcc: hidden1@recipient.test,\r\n  hidden2@", b"X-A: ")
    code, reply = submit(mail_env, raw, [TO])
    assert code == 250
    cid = reply.decode().split("queued as ")[1]
    mail_env.wait_status(cid, "delivered")
    (got,) = mail_env.peer.received
    assert got.data.endswith(raw)  # nothing changed below the fields Sealpost adds
    records = _records(mail_env, cid)
    assert "delivered_copies" not in records["SubmissionAcceptance"]["details"]["message"]
    changes = records["RelayToNonERDS"]["details"]["delivered_changes"]
    assert changes == {"fields_added": ["Received", "X-Sealpost-Communication"]}


def test_a_raw_message_without_a_last_line_end_is_delivered_with_one_and_says_so(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    raw = _message("unterminated").replace(b"Bcc: hidden1@recipient.test,\r\n  hidden2@", b"X-A: ")
    raw = raw.removesuffix(b"\r\n")
    body = {"raw": base64.b64encode(raw).decode(), "recipients": [TO]}
    response = mail_client.post("/v1/communications", json=body, headers=mail_key)
    assert response.status_code == 201, response.text
    cid = response.json()["communications"][0]["id"]
    mail_env.wait_status(cid, "delivered")
    (got,) = mail_env.peer.received
    assert got.data.endswith(raw + b"\r\n")
    records = _records(mail_env, cid)
    note = records["SubmissionAcceptance"]["details"]["message"]["delivered_copies"]
    assert note == {
        "final_crlf_added": True,
        "digests": "content.sha256 is of the message as received, line ends as received; each "
        "delivery record's delivered_sha256 is of the copy transmitted to the recipient's "
        "server, Sealpost's fields on top, CRLF line ends",
    }
    details = records["RelayToNonERDS"]["details"]
    assert details["delivered_changes"] == {
        "fields_added": ["Received", "X-Sealpost-Communication"],
        "final_crlf_added": True,
    }
    assert details["delivered_sha256"] == hashlib.sha256(got.data).hexdigest()
