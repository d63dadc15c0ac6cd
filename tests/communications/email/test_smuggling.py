"""SMTP smuggling (SEC Consult, 2023; RFC 5321 §4.1.1.4, §2.3.8): an end-of-data sequence
made of bare LF or bare CR must neither end our DATA nor reach the next hop in a form a lenient
server would take for one (docs/security.md).

Each variant hides a second transaction, to a recipient the sender never named, behind a
non-standard end of data.  Sealpost must take it as one message to the one recipient, and the
copy it delivers must have only CRLF line ends, so no next hop can be made to split it.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, _client_tls

VICTIM = f"victim@{RECIPIENT_DOMAIN}"
SMUGGLED = (
    b"MAIL FROM:<ceo@acme.test>\r\n"
    + f"RCPT TO:<{VICTIM}>\r\n".encode()
    + b"DATA\r\n"
    + b"From: CEO <ceo@acme.test>\r\nSubject: Smuggled\r\n\r\nPay the invoice.\r\n"
)

VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr": b"\r\n.\r",
}


@pytest.mark.parametrize("end", VARIANTS.values(), ids=VARIANTS.keys())
def test_a_smuggled_second_message_stays_inside_the_first(mail_env: MailEnv, end: bytes) -> None:
    legit = f"bob@{RECIPIENT_DOMAIN}"
    payload = (
        b"From: Care <service@acme.test>\r\n"
        + f"To: {legit}\r\n".encode()
        + b"Subject: Warranty notice\r\n\r\nYour warranty ends soon."
        + end
        + SMUGGLED
    )
    with smtplib.SMTP("127.0.0.1", mail_env.submission_port, timeout=10) as client:
        client.ehlo("crm.acme.test")
        client.starttls(context=_client_tls())
        client.ehlo("crm.acme.test")
        client.login(mail_env.credential.username, mail_env.credential.password)
        client.mail("service@acme.test")
        client.rcpt(legit)
        assert client.docmd("DATA")[0] == 354
        client.send(payload + b"\r\n.\r\n")  # the only real end of data, as RFC 5321 says
        code, reply = client.getreply()
        assert code == 250, reply
        assert client.noop()[0] == 250  # nothing smuggled is left pending in the session
        communication_id = reply.decode().split()[-1]

    found = mail_env.sp.communications.search(mail_env.tenant_id)
    assert [c.recipient for c in found] == [legit], "the smuggled recipient became a message"
    assert found[0].id == communication_id
    mail_env.wait_status(communication_id, "delivered")
    copies = mail_env.peer.received
    assert [c.rcpt_tos for c in copies] == [[legit]]
    body = copies[0].data
    assert b"Pay the invoice." in body  # inside the one message, as text
    bare = body.replace(b"\r\n", b"")
    assert b"\n" not in bare and b"\r" not in bare, "a bare LF or CR reached the next hop"
