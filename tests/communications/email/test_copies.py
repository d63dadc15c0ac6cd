"""The delivered copy, byte by byte: every Bcc form a sender could use is removed, nothing else.

What the recipient's server gets is what a real SMTP client transmits (aiosmtplib is the one
Sealpost uses), so the digest in evidence is of bytes that really arrived.
"""

from __future__ import annotations

import pytest
from aiosmtplib.protocol import normalize_message_line_endings

from sealpost.communications.email.copies import acceptance_note, delivery_copy, without_bcc
from sealpost.communications.email.mime import describe_message, header_section, to_crlf


@pytest.mark.parametrize(
    "raw",
    [
        b"a\nb\r\nc\rd",
        b"\r\r\n\n\r",
        b"From: x\r\n\r\nbody\r\n",
        b"",
        b"no line end",
        b"\n.\n..\r.\r\n",
    ],
)
def test_to_crlf_is_what_the_smtp_client_transmits(raw: bytes) -> None:
    assert to_crlf(raw) == normalize_message_line_endings(raw)


@pytest.mark.parametrize(
    ("raw", "head"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", b"A: 1\r\nB: 2\r\n\r\n"),
        (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2\n\n"),
        (b"A: 1\r\r\nbody", b"A: 1\r\r\n"),  # a bare CR then CRLF: an empty line
        (b"\r\nbody", b"\r\n"),  # no header at all
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),  # no body
    ],
)
def test_the_header_section_ends_at_the_first_empty_line(raw: bytes, head: bytes) -> None:
    assert header_section(raw) == head


SMUGGLED = [
    b"Bcc: eve@evil.test\r\n",
    b"BCC: eve@evil.test\r\n",
    b"bcc : eve@evil.test\r\n",  # RFC 5322 §4.5 obsolete syntax: white space before the colon
    b"Bcc:\r\n eve@evil.test,\r\n\tmallory@evil.test\r\n",  # folded
    b"Bcc:\r\n \r\n eve@evil.test\r\n",  # a folding line of white space only
    b"Resent-Bcc: eve@evil.test\r\n",
    b"Bcc:\r\n",  # empty: still the field RFC 5322 §3.6.3 describes
]


@pytest.mark.parametrize("field", SMUGGLED)
def test_every_form_of_bcc_is_removed_and_nothing_else(field: bytes) -> None:
    raw = (
        b"From: a@acme.test\r\nTo: b@recipient.test\r\n" + field + b"Subject: s\r\n\r\n"
        b"Bcc: eve@evil.test in the body stays\r\n"
    )
    copy, removed = without_bcc(raw)
    assert removed == 1
    assert copy == (
        b"From: a@acme.test\r\nTo: b@recipient.test\r\nSubject: s\r\n\r\n"
        b"Bcc: eve@evil.test in the body stays\r\n"
    )
    assert describe_message(copy).bcc == ()


def test_a_bare_cr_cannot_hide_a_bcc_field_from_the_filter() -> None:
    # once transmitted, the bare CR is a line end and "Bcc:" starts a field of its own
    raw = b"From: a@acme.test\r\nX-Note: hello\rBcc: eve@evil.test\r\n\r\nbody\r\n"
    copy = delivery_copy(raw, [("Received", "by sealpost.test")])
    assert b"eve@evil.test" not in copy.data
    assert copy.bcc_fields_removed == 1 and copy.line_ends_converted
    assert (
        copy.data
        == b"Received: by sealpost.test\r\nFrom: a@acme.test\r\nX-Note: hello\r\n\r\nbody\r\n"
    )
    assert acceptance_note(raw) == {
        "bcc_fields_removed": 1,
        "line_ends_converted": True,
        "digests": "content.sha256 is of the message as received, Bcc field included, line ends "
        "as received; each delivery record's delivered_sha256 is of the copy transmitted to the "
        "recipient's server, Sealpost's fields on top, without the Bcc field, CRLF line ends",
    }


def test_a_signature_is_made_over_the_copy_transmitted() -> None:
    raw = b"From: a@acme.test\nBcc: eve@evil.test\n\nbody\n"
    signed: list[bytes] = []

    def sign(data: bytes) -> bytes:
        signed.append(data)
        return b"DKIM-Signature: v=1; b=x\r\n"

    copy = delivery_copy(raw, [("X-Sealpost-Communication", "c1")], sign)
    assert signed == [b"X-Sealpost-Communication: c1\r\nFrom: a@acme.test\r\n\r\nbody\r\n"]
    assert copy.data == b"DKIM-Signature: v=1; b=x\r\n" + signed[0]
    assert copy.fields_added == ("DKIM-Signature", "X-Sealpost-Communication")


def test_a_message_without_bcc_or_bare_line_ends_needs_no_note() -> None:
    assert acceptance_note(b"From: a@acme.test\r\nTo: b@recipient.test\r\n\r\nhi\r\n") is None
    raw = b"From: a@acme.test\r\n\r\nhi\r\n"
    copy = delivery_copy(raw, [])
    assert copy.data == raw and copy.evidence("r" * 64)["delivered_changes"] == {"fields_added": []}
