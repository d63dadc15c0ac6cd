"""Seeds for the MIME and DSN fuzz properties: real, valid messages of every shape we ingest.

The DSNs are the real-world-shaped samples of ``tests/testdata/email``; the messages are what
the REST API builds (``build_message``), what mail clients send (nested multiparts, attached
emails, RFC 2231 and RFC 2047 names, 8-bit headers, quoted-printable, base64) and a certify
message.  Every seed is CRLF, as on the SMTP wire; the mutations swap line endings too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from sealpost.communications.email.mime import build_message

EMAIL_DATA = Path(__file__).parents[1] / "testdata" / "email"


def crlf(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dsn_seeds() -> list[bytes]:
    return [crlf(p.read_bytes()) for p in sorted(EMAIL_DATA.glob("*.eml"))]


def _built() -> list[bytes]:
    date = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    common = {"message_id": "<fuzz-1@acme.test>", "date": date}
    return [
        build_message(
            sender="Acme Service <service@acme.test>",
            to=["bob@recipient.test"],
            subject="Warranty notice 42",
            text="Your warranty expires on 2027-01-31.\n",
            html=None,
            attachments=[],
            **common,
        ),
        build_message(
            sender="Zoë Müller <zoe@acme.test>",
            to=["Bob <bob@recipient.test>", "carol@bücher.example"],
            cc=["dan@recipient.test"],
            reply_to="desk@acme.test",
            subject="Résiliation du contrat — 契約",
            text="Bonjour,\n\nci-joint la lettre.\n",
            html="<p>Bonjour,</p><p>ci-joint la <b>lettre</b>.</p>",
            attachments=[
                ("lettre résiliation.pdf", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj"),
                ("data.bin", "application/octet-stream", bytes(range(256))),
            ],
            in_reply_to="<earlier@acme.test>",
            references=["<first@acme.test>", "<earlier@acme.test>"],
            **common,
        ),
        build_message(
            sender="josé@acme.test",  # a non-ASCII local part: SMTPUTF8, raw UTF-8 headers
            to=["bob@recipient.test"],
            subject="UTF-8 headers",
            text=None,
            html="<p>only html</p>",
            attachments=[],
            **common,
        ),
    ]


_CLIENT = """\
Return-Path: <alice@acme.test>
Received: from [192.0.2.7] (client.acme.test [192.0.2.7])
\tby mx.acme.test with ESMTPSA id 4FzX; Mon, 23 Nov 2026 10:00:00 +0000
From: "Alice (Legal)" <alice@acme.test>, Group: bob@recipient.test,
 "=?utf-8?q?J=C3=B6rg?=" <jorg@acme.test>;
To: =?iso-8859-1?q?Andr=E9?= <andre@recipient.test>,
 "quoted, name" <q@recipient.test>
Cc: undisclosed-recipients:;
Subject: =?utf-8?b?Q29udHJhdCBzaWduw6k=?= and =?bogus?q?x?= plain
Date: Mon, 23 Nov 2026 10:00:00 +0000
Message-ID: < spaced@acme.test >
References: <a@acme.test> <b@acme.test>
 <c@acme.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 =3D soft=
 break
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+Q2Fmw6k8L3A+
--inner--
--outer
Content-Type: application/pdf
Content-Disposition: attachment; filename*0*=utf-8''contrat%20sign;
 filename*1*=%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKJeLjz9MK
--outer
Content-Type: message/rfc822
Content-Disposition: attachment; filename="=?utf-8?q?fw=C3=A9.eml?="

From: x@acme.test
Subject: forwarded
Content-Type: multipart/mixed; boundary=deep

--deep
Content-Type: text/plain

deep
--deep--
--outer
Content-Type: text/plain; name="legacy\xe9.txt"
Content-Transfer-Encoding: x-uuencode

begin 644 x.txt
#86)C
`
end
--outer--
epilogue
"""

_DIGEST = """\
From: digest@acme.test
To: list@recipient.test
Subject: digest
Content-Type: multipart/digest; boundary=d

--d

From: one@acme.test
Subject: one

first
--d
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.test

Final-Recipient: rfc822; x@recipient.test
Action: failed
Status: 5.1.1
--d--
"""

_CERTIFY = """\
From: Acme Service <service@acme.test>
To: zoe@recipient.test.certify.sealpost.test
Cc: certify@certify.sealpost.test
Subject: certify me
Date: {date}
Message-ID: <certify-1@acme.test>
Content-Type: text/plain; charset=us-ascii

Please certify.
"""


def mime_seeds() -> list[bytes]:
    """Messages as clients, the API and MTAs send them (CRLF)."""
    certify = _CERTIFY.format(date=format_datetime(datetime.now(UTC)))
    texts = [_CLIENT.encode("latin-1"), _DIGEST, certify]  # latin-1: one raw 8-bit name
    return [*_built(), *(crlf(t) for t in texts)]


MIME_TOKENS: tuple[bytes, ...] = (
    b"Content-Type: multipart/mixed; boundary=X\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=X\r\n",
    b"Content-Type: message/delivery-status\r\n",
    b"Content-Type: message/global-delivery-status\r\n",
    b"Content-Type: text/rfc822-headers\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Transfer-Encoding: x-uuencode\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%FF%FE\r\n",
    b"Content-Disposition: attachment; filename*0*=x''%ED%A0%80; filename*1=y\r\n",
    b"Subject: =?utf-8?q?=FF?= =?unknown-8bit?b?/w==?=\r\n",
    b'From: "=?utf-8?q?=ED=A0=80?=" <a@b.example>\r\n',
    b'From: <@>, ,, "" <>\r\n',
    b"To: a@b.example, (comment (nested)) <c@d.example>\r\n",
    b"Message-ID: <x@y>\r\n",
    b"References: <",
    b"=?utf-8?b?",
    b"=?",
    b"?=",
    b"(",
    b")",
    b"<",
    b">",
    b"@",
    b",",
    b";",
    b":",
    b"\r\n ",
    b"--X\r\n",
    b"--X--\r\n",
    b"--",
    b"=\r\n",
    b"begin 644 x\r\n",
    b"Final-Recipient: rfc822; x@y.example\r\n",
    b"Action: failed\r\n",
    b"Status: 5.1.1\r\n",
    b"Diagnostic-Code: smtp; 550 5.1.1 nope\r\n",
)
