"""MIME facts: exact digests, tolerance of malformed input, header decoding, writing headers."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import re
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealpost.communications.email import mime
from sealpost.communications.email.mime import (
    HeaderError,
    build_message,
    describe_message,
    ensure_message_id,
    line_ending,
    new_message_id,
    prepend_headers,
)
from sealpost.errors import InvalidInput


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


PDF = b"%PDF-1.7\n" + bytes(range(256)) * 3 + b"\n%%EOF\n"
CSV = "name;amount\nAndré;12,50\n".encode()
TEXT_BODY = b"Hello,\r\n\r\nplease find the invoice and the statement attached.\r\n"


def two_attachments() -> bytes:
    pdf_b64 = base64.encodebytes(PDF).decode("ascii")
    csv_b64 = base64.encodebytes(CSV).decode("ascii")
    head = crlf(
        "From: Billing <billing@sender.example>\n"
        "To: Alice <alice@recipient.example>, bob@recipient.example\n"
        "Cc: archive@sender.example\n"
        "Subject: Invoice 2026-118\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0100\n"
        "Message-ID: <inv-2026-118@sender.example>\n"
        "In-Reply-To: <question-1@recipient.example>\n"
        "References: <thread-0@recipient.example>\n <question-1@recipient.example>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="BOUNDARY"\n'
        "\n"
        "--BOUNDARY\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
    )
    rest = crlf(
        "\n--BOUNDARY\n"
        'Content-Type: application/pdf; name="invoice.pdf"\n'
        'Content-Disposition: attachment; filename="invoice.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n" + pdf_b64 + "--BOUNDARY\n"
        "Content-Type: text/csv; charset=utf-8\n"
        "Content-Disposition: attachment; filename*=utf-8''relev%C3%A9.csv\n"
        "Content-Transfer-Encoding: base64\n"
        "\n" + csv_b64 + "--BOUNDARY--\n"
    )
    # The text part's payload is everything up to the CRLF that belongs to the boundary.
    return head + TEXT_BODY + rest


def test_multipart_with_two_attachments_has_three_parts_with_independent_digests() -> None:
    raw = two_attachments()
    facts = describe_message(raw)

    assert facts.content.sha256 == sha(raw)
    assert facts.content.size == len(raw)
    parts = facts.content.parts
    assert [p.content_type for p in parts] == ["text/plain", "application/pdf", "text/csv"]
    assert [p.filename for p in parts] == [None, "invoice.pdf", "relevé.csv"]
    assert parts[0].sha256 == sha(TEXT_BODY) and parts[0].size == len(TEXT_BODY)
    assert parts[1].sha256 == sha(PDF) and parts[1].size == len(PDF)
    assert parts[2].sha256 == sha(CSV) and parts[2].size == len(CSV)
    assert facts.defects == ()


def test_headers_of_a_well_formed_message() -> None:
    facts = describe_message(two_attachments())
    assert facts.message_id == "<inv-2026-118@sender.example>"
    assert facts.subject == "Invoice 2026-118"
    assert facts.from_address == "billing@sender.example"
    assert facts.from_display == "Billing"
    assert facts.to == ("alice@recipient.example", "bob@recipient.example")
    assert facts.cc == ("archive@sender.example",)
    assert facts.date == "Mon, 23 Nov 2026 10:00:00 +0100"
    assert facts.in_reply_to == "<question-1@recipient.example>"
    assert facts.references == ("<thread-0@recipient.example>", "<question-1@recipient.example>")


DAMAGED_STATUS = (
    crlf(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
        "Final-Recipient: rfc822; a@b.example\nContent-Type: multipart/mixed\nAction: failed\n"
        "Status: 5.1.1\nWill-Re"
    )
    + b"\xffry: x\r\n\r\n--B--\r\n"
)

MALFORMED = {
    "broken base64": crlf(
        "From: a@sender.example\nSubject: broken\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain\n\nhello\n"
        "--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        "QUJDR\n--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        "QUJD!!!RA*\n--XX--\n"
    ),
    "missing boundary end": crlf(
        "From: a@sender.example\nSubject: cut\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain\n\nthe message was truncated here\n"
    ),
    "NUL byte": crlf("From: a@sender.example\nSubject: nul\n\nbefore") + b"\x00after\r\n",
    "8-bit headers": b"From: J\xe9r\xf4me <j@sender.example>\r\nSubject: caf\xe9 \xff\xfe\r\n"
    b"X-Weird: \x80\x81\r\n\r\nbody\r\n",
    "non-MIME plain text": b"just some text\nwith no header at all\n",
    "boundary never found": crlf(
        "From: a@sender.example\nContent-Type: multipart/mixed; boundary=NOPE\n\nno parts\n"
    ),
    "multipart without boundary": crlf(
        "From: a@sender.example\nContent-Type: multipart/mixed\n\n--x\n\nhi\n--x--\n"
    ),
    "empty": b"",
    "headers only": b"Subject: x",
    "garbage content type": crlf(
        'Content-Type: ;;;=="\nContent-Transfer-Encoding: base64\n\n%%%%\n'
    ),
    "bad charset in encoded word": crlf("Subject: =?x-unknown?q?abc?= =?utf-8?b?***?=\n\nx\n"),
    # A block that claims to be multipart, with 8-bit bytes: the stdlib generator gives up.
    "damaged delivery-status": DAMAGED_STATUS,
    "deep nesting": b"".join(
        crlf(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n") for i in range(300)
    )
    + b"leaf\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_messages_are_described_without_raising(name: str) -> None:
    raw = MALFORMED[name]
    facts = describe_message(raw)
    assert facts.content.sha256 == sha(raw)
    assert facts.content.size == len(raw)
    for part in facts.content.parts:
        assert re.fullmatch(r"[0-9a-f]{64}", part.sha256)


def test_broken_base64_is_recorded_as_a_defect() -> None:
    facts = describe_message(MALFORMED["broken base64"])
    assert len(facts.content.parts) == 3
    # Undecodable (a length of 1 mod 4): the digest is of the raw payload, and a defect says so.
    assert any("part 2" in d and "raw payload" in d for d in facts.defects)
    assert facts.content.parts[1].sha256 == sha(b"QUJDR")
    # Characters outside the alphabet are ignored as RFC 2045 §6.8 says; missing padding added.
    assert any("part 3" in d and "InvalidBase64Characters" in d for d in facts.defects)
    assert facts.content.parts[2].sha256 == sha(b"ABCD")


def test_missing_boundary_end_keeps_the_part_and_says_so() -> None:
    facts = describe_message(MALFORMED["missing boundary end"])
    assert [p.content_type for p in facts.content.parts] == ["text/plain"]
    assert any("CloseBoundaryNotFound" in d for d in facts.defects)


def test_nul_byte_is_kept_in_the_part_digest() -> None:
    facts = describe_message(MALFORMED["NUL byte"])
    assert facts.content.parts[0].sha256 == sha(b"before\x00after\r\n")


def test_eight_bit_headers_are_read_best_effort() -> None:
    facts = describe_message(MALFORMED["8-bit headers"])
    assert facts.from_address == "j@sender.example"
    assert facts.from_display == "Jérôme"  # not UTF-8: read as Latin-1
    assert facts.subject is not None and facts.subject.startswith("café")


def test_non_mime_text_is_one_text_part() -> None:
    raw = MALFORMED["non-MIME plain text"]
    facts = describe_message(raw)
    assert facts.subject is None and facts.message_id is None
    assert len(facts.content.parts) == 1
    assert facts.content.parts[0].content_type == "text/plain"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "=?utf-8?b?UmFwcGVsIDogw6ljaMOpYW5jZSBkdSAzMCBub3ZlbWJyZQ==?=",
            "Rappel : échéance du 30 novembre",
        ),
        ("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?iso-8859-1?q?K=F6ln?=", "Grüße aus Köln"),
        ("=?utf-8?q?first?=\n =?utf-8?q?_second?=", "first second"),
        ("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"),
        ("plain =?bad", "plain =?bad"),
    ],
)
def test_rfc2047_subjects_are_decoded(header: str, expected: str) -> None:
    raw = crlf(f"From: a@sender.example\nSubject: {header}\n\nbody\n")
    assert describe_message(raw).subject == expected


def test_raw_utf8_headers_under_smtputf8_are_decoded() -> None:
    raw = crlf(
        "From: Zoë Ünal <zoë@bücher.example>\nTo: 李雷 <李雷@例子.测试>\n"
        "Subject: Überweisung für März ✓\n\nbody\n"
    )
    facts = describe_message(raw)
    assert facts.subject == "Überweisung für März ✓"
    assert facts.from_display == "Zoë Ünal"
    assert facts.from_address == "zoë@bücher.example"
    assert facts.to == ("李雷@例子.测试",)


def test_encoded_display_names_are_decoded() -> None:
    raw = crlf("From: =?utf-8?q?Andr=C3=A9_M=C3=BCller?= <andre@sender.example>\n\nx\n")
    facts = describe_message(raw)
    assert facts.from_display == "André Müller"
    assert facts.from_address == "andre@sender.example"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<abc@sender.example>", "<abc@sender.example>"),
        ("   <abc@sender.example>   ", "<abc@sender.example>"),
        ("<abc@sender.example> (a comment)", "<abc@sender.example>"),
        ("abc@sender.example", "<abc@sender.example>"),
        ("<abc@sender\n .example>", "<abc@sender.example>"),
    ],
)
def test_message_id_is_normalized_to_angle_brackets(header: str, expected: str) -> None:
    raw = crlf(f"Message-ID: {header}\nFrom: a@sender.example\n\nx\n")
    assert describe_message(raw).message_id == expected


def test_attached_message_is_one_part() -> None:
    inner = crlf("From: x@other.example\nSubject: forwarded\n\nthe forwarded body")
    raw = (
        crlf(
            "From: a@sender.example\nContent-Type: multipart/mixed; boundary=XX\n\n"
            "--XX\nContent-Type: text/plain\n\nsee attached\n"
            "--XX\nContent-Type: message/rfc822\n"
            'Content-Disposition: attachment; filename="fwd.eml"\n\n'
        )
        + inner
        + b"\r\n--XX--\r\n"
    )
    parts = describe_message(raw).content.parts
    assert [p.content_type for p in parts] == ["text/plain", "message/rfc822"]
    assert parts[1].filename == "fwd.eml"
    assert parts[1].sha256 == sha(inner)


def test_digest_parts_default_to_attached_messages() -> None:
    inner = crlf("Subject: one\n\nfirst\n")
    raw = crlf("Content-Type: multipart/digest; boundary=D\n\n--D\n\n") + inner + b"\r\n--D--\r\n"
    (part,) = describe_message(raw).content.parts
    assert part.content_type == "message/rfc822"
    assert part.sha256 == sha(inner)


def test_damaged_message_part_is_digested_best_effort_and_says_so() -> None:
    facts = describe_message(DAMAGED_STATUS)
    assert [p.content_type for p in facts.content.parts] == ["message/delivery-status"]
    assert facts.defects == ("part 1: damaged message part; digest is of a re-serialisation",)


def test_rfc2047_encoded_filename_is_decoded() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=XX\n\n--XX\n"
        'Content-Type: application/pdf; name="=?UTF-8?B?w6l0w6kucGRm?="\n\n%PDF\n--XX--\n'
    )
    assert describe_message(raw).content.parts[0].filename == "été.pdf"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096))
def test_describe_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    facts = describe_message(raw)
    assert facts.content.sha256 == sha(raw)
    assert facts.content.size == len(raw)


MIME_FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=X\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Transfer-Encoding: x-uuencode\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%FF%FE\r\n",
        b"Subject: =?utf-8?b?w6k=?= =?bogus?q?x?=\r\n",
        b'From: <@>, ,, "" <>\r\n',
        b"\r\n",
        b"--X\r\n",
        b"--X--\r\n",
        b"=?utf-8?q?=FF?=\r\n",
        b"QUJD\r\n",
        b"begin 644 x\r\n",
        b"\x00\xff\xfe\r\n",
        b" folded continuation\r\n",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(MIME_FRAGMENTS | st.binary(max_size=16), max_size=40))
def test_describe_never_raises_on_mime_shaped_noise(fragments: list[bytes]) -> None:
    raw = b"".join(fragments)
    facts = describe_message(raw)
    assert facts.content.sha256 == sha(raw)


# -- writing -------------------------------------------------------------------------------

RECEIVED = (
    "from client.sender.example (client.sender.example [192.0.2.10]) by mx.sealpost.example "
    "(Sealpost) with ESMTPSA id 6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f for "
    "<alice@recipient.example>; Mon, 23 Nov 2026 10:00:00 +0000"
)


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_prepend_headers_folds_and_keeps_the_original_bytes(newline: bytes) -> None:
    raw = b"From: a@sender.example" + newline + b"Subject: x" + newline + newline + b"body"
    out = prepend_headers(raw, [("Received", RECEIVED), ("Message-ID", "<id@sealpost.example>")])
    assert out.endswith(raw)
    added = out[: -len(raw)]
    lines = added.split(newline)
    assert lines[-1] == b""
    assert all(len(line) <= 78 for line in lines)
    other = b"\r\n" if newline == b"\n" else b"\n"
    assert other not in added.replace(newline, b"")
    assert lines[0].startswith(b"Received: from ")
    assert all(line[:1] in b" \t" for line in lines[1:-2])
    parsed = email.message_from_bytes(out, policy=email.policy.compat32)
    assert re.sub(r"\r?\n", "", str(parsed["Received"])) == RECEIVED
    assert parsed["Message-ID"] == "<id@sealpost.example>"
    assert describe_message(out).message_id == "<id@sealpost.example>"


def test_prepend_headers_keeps_a_long_token_whole() -> None:
    token = "x" * 120
    out = prepend_headers(b"\r\n", [("X-Long", f"a {token} b")])
    assert out == f"X-Long: a\r\n {token}\r\n b\r\n".encode() + b"\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Received", "x\r\nBcc: victim@example.com"),
        ("Received", "x\nBcc: victim@example.com"),
        ("Bad Name", "x"),
        ("Colon:", "x"),
        ("", "x"),
    ],
)
def test_prepend_headers_refuses_injection(name: str, value: str) -> None:
    with pytest.raises(HeaderError):
        prepend_headers(b"\r\n", [(name, value)])


def test_line_ending_detection() -> None:
    assert line_ending(b"a: b\r\n\r\n") == b"\r\n"
    assert line_ending(b"a: b\n\n") == b"\n"
    assert line_ending(b"no newline") == b"\r\n"
    assert line_ending(b"\nbody") == b"\n"


def test_new_message_id() -> None:
    first, second = new_message_id("Sealpost.Example"), new_message_id("sealpost.example")
    assert re.fullmatch(r"<[0-9a-f]{32}@sealpost\.example>", first)
    assert first != second
    assert new_message_id("bücher.example").endswith("@xn--bcher-kva.example>")


def test_ensure_message_id_adds_one_only_when_absent() -> None:
    raw = b"From: a@sender.example\r\n\r\nx\r\n"
    out, message_id = ensure_message_id(raw, "sealpost.example")
    assert out.endswith(raw) and out.startswith(f"Message-ID: {message_id}\r\n".encode())
    assert ensure_message_id(out, "sealpost.example") == (out, message_id)


# -- build_message ---------------------------------------------------------------------------


def test_build_message_round_trips_through_describe() -> None:
    when = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    raw = build_message(
        sender="Billing Dept <billing@sender.example>",
        to=["alice@recipient.example", "Bob <bob@recipient.example>"],
        cc=["archive@sender.example"],
        subject="Facture n° 118 — échéance",
        text="Bonjour,\nvoici la facture.\n",
        html="<p>Bonjour,</p><p>voici la facture.</p>",
        attachments=[("facture.pdf", "application/pdf", PDF), ("relevé.csv", "text/csv", CSV)],
        message_id="<api-1@sealpost.example>",
        date=when,
        in_reply_to="<q-1@recipient.example>",
        references=["<q-0@recipient.example>", "<q-1@recipient.example>"],
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()  # 7-bit clean: non-ASCII went into encoded words / base64 / QP
    facts = describe_message(raw)
    assert facts.defects == ()
    assert facts.subject == "Facture n° 118 — échéance"
    assert facts.message_id == "<api-1@sealpost.example>"
    assert facts.from_address == "billing@sender.example"
    assert facts.from_display == "Billing Dept"
    assert facts.to == ("alice@recipient.example", "bob@recipient.example")
    assert facts.cc == ("archive@sender.example",)
    assert facts.date == "Mon, 23 Nov 2026 09:30:00 +0000"
    assert facts.in_reply_to == "<q-1@recipient.example>"
    assert facts.references == ("<q-0@recipient.example>", "<q-1@recipient.example>")
    kinds = [(p.content_type, p.filename) for p in facts.content.parts]
    assert kinds == [
        ("text/plain", None),
        ("text/html", None),
        ("application/pdf", "facture.pdf"),
        ("text/csv", "relevé.csv"),
    ]
    assert facts.content.parts[2].sha256 == sha(PDF)
    assert facts.content.parts[3].sha256 == sha(CSV)
    assert raw.count(b"MIME-Version") == 1


def test_build_message_idna_domains_and_smtputf8_local_parts() -> None:
    raw = build_message(
        sender="zoë@bücher.example",
        to=["bob@bücher.example"],
        subject="hi",
        text="x",
        html=None,
        attachments=(),
        message_id="<m@sealpost.example>",
    )
    facts = describe_message(raw)
    assert facts.from_address == "zoë@xn--bcher-kva.example"
    assert facts.to == ("bob@xn--bcher-kva.example",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"to": []},
        {"text": None, "html": None, "attachments": []},
        {"subject": "two\r\nBcc: victim@example.com"},
        {"sender": "not an address"},
        {"to": ["x@exa mple.com"]},
        {"attachments": [("a.bin", "nonsense", b"x")]},
    ],
)
def test_build_message_refuses_bad_input(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "sender": "a@sender.example",
        "to": ["b@recipient.example"],
        "subject": "s",
        "text": "t",
        "html": None,
        "attachments": [],
        "message_id": "<m@sealpost.example>",
    }
    base.update(kwargs)
    with pytest.raises(InvalidInput):
        build_message(**base)  # type: ignore[arg-type]


# -- large messages in bounded memory (issue 16, P6) ---------------------------------------


def _large(body: bytes, cte: str = "base64", nl: bytes = b"\r\n", pre: bytes = b"") -> bytes:
    head = (
        b"From: a@b.example\r\nTo: c@d.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
    ).replace(b"\r\n", nl)
    return (
        head + pre + b"--BB" + nl + b"Content-Type: text/plain" + nl + nl + b"hi" + nl
        + b"--BB" + nl + b"Content-Type: application/pdf; name=a.pdf" + nl
        + b"Content-Transfer-Encoding: " + cte.encode() + nl + nl + body + b"--BB--" + nl
    )  # fmt: skip


def _b64_lines(data: bytes, nl: bytes = b"\r\n") -> bytes:
    return base64.encodebytes(data).replace(b"\n", nl)


_DATA = bytes(range(256)) * 5000  # 1.2 MiB: over the streaming threshold once encoded
_ENC = _b64_lines(_DATA)


@pytest.mark.parametrize(
    ("raw", "streamed"),
    [
        (_large(_ENC), True),
        (_large(_b64_lines(_DATA, b"\n"), nl=b"\n"), True),
        (_large(_ENC[:100_000] + b"\r\n" + _ENC[100_000:]), True),  # two runs, one part
        (_large(_ENC, cte="quoted-printable"), False),
        (_large(_ENC, cte="7bit"), False),
        (_large(_ENC[:100_000] + b"YQ==\r\n" + _ENC[100_000:]), False),  # padding inside
        (_large(_ENC[:100_000] + b"Y*Q=\r\n" + _ENC[100_000:]), False),  # not the alphabet
        (_large(_ENC + b"QQ\r\n"), False),  # length not a multiple of 4
        (_large(b"x\r\n", pre=_ENC), False),  # in the preamble
        (b"From: a@b.example\r\nContent-Transfer-Encoding: base64\r\n" + _ENC, True),  # no blank
    ],
)
def test_a_large_message_is_described_as_the_whole_parse_describes_it(
    raw: bytes, streamed: bool
) -> None:
    """Streamed or not, the facts (digests, sizes, defects) are the whole parse's."""
    whole = mime._describe(raw, mime.parse_message(raw), None)
    assert describe_message(raw) == whole
    runs = mime._Runs.cut(raw)
    assert runs is not None
    try:
        mime._describe(raw, mime.parse_message(runs.skeleton), runs)
        took = True
    except mime._NotStreamable:
        took = False
    assert took is streamed
    if streamed:
        assert whole.content.parts[-1].sha256 == sha(_DATA)


def test_a_large_attachment_is_written_as_the_standard_library_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spliced base64 lines give the same bytes as the stdlib's own encoding."""
    import random

    fields = {
        "sender": "s@x.example",
        "to": ["t@y.example"],
        "subject": "big",
        "text": "see attached",
        "html": None,
        "attachments": [("a.bin", "application/octet-stream", _DATA), ("b", "a/b", b"x" * 9)],
        "message_id": "<1@x.example>",
        "date": datetime(2026, 1, 1, tzinfo=UTC),
    }
    random.seed(7)  # the boundary
    spliced = build_message(**fields)  # type: ignore[arg-type]
    monkeypatch.setattr(mime, "_SPLICE_MIN", 1 << 40)
    random.seed(7)
    assert build_message(**fields) == spliced  # type: ignore[arg-type]


def test_a_large_forwarded_message_attached_is_sent_as_it_is() -> None:
    """Only what the stdlib writes as CRLF base64 lines is spliced: a message/rfc822 attachment
    (forwarding a mail) is built by the stdlib itself, and is not refused."""
    inner = b"From: a@x.example\r\nSubject: fwd\r\n\r\n" + b"line of the forwarded mail\r\n" * 6000
    built = build_message(
        sender="s@x.example",
        to=["t@y.example"],
        subject="forwarding",
        text="see the attached message",
        html=None,
        attachments=[("fwd.eml", "message/rfc822", inner)],
        message_id="<2@x.example>",
        date=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert len(inner) > mime._SPLICE_MIN
    assert b"Content-Type: message/rfc822" in built
    part = built[built.index(b'filename="fwd.eml"') :]
    body = part[part.index(b"\r\n\r\n") + 4 : part.index(b"\r\n--")]
    assert base64.b64decode(body) == inner  # as the stdlib builds it (no splice)


def test_the_parser_keeps_crlf_line_ends_in_the_parts_it_digests() -> None:
    """A text part's digest is of its bytes as received, CRLF included (the parser is fed the
    message as it came, never through a text file that would translate line ends)."""
    raw = (
        b"From: a@b.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nline 1\r\nline 2\r\n\r\n--B--\r\n"
    )
    (part,) = describe_message(raw).content.parts
    assert part.sha256 == sha(b"line 1\r\nline 2\r\n")
    headers_only = mime._parse(raw, headersonly=True)
    assert headers_only["From"] == "a@b.example"
