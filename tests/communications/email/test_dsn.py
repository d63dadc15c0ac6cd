"""RFC 3464 delivery status notifications, from real-world-shaped samples and from garbage."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealpost.communications.email.dsn import DeliveryReport, parse_dsn

DATA = Path(__file__).parents[2] / "testdata" / "email"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def test_postfix_user_unknown() -> None:
    report = parse_dsn(sample("dsn_postfix_user_unknown.eml"))
    assert report is not None
    assert report.reporting_mta == "mail.sender.example"
    assert report.original_envelope_id is None
    (rcpt,) = report.recipients
    assert rcpt.final_recipient == "nobody@recipient.example"
    assert rcpt.original_recipient == "nobody@recipient.example"
    assert rcpt.action == "failed" and rcpt.permanent
    assert rcpt.status == "5.1.1"
    assert rcpt.remote_mta == "mx1.recipient.example"
    assert rcpt.diagnostic_code == (
        "550 5.1.1 <nobody@recipient.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert rcpt.inferred == ()
    assert report.original_message_id == "<c0ffee00112233445566778899aabbcc@sender.example>"
    assert report.original_headers["X-Sealpost-Communication"] == (
        "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
    )
    assert report.original_headers["Subject"] == "Your invoice 2026-118"


def test_exim_failure() -> None:
    report = parse_dsn(sample("dsn_exim_failed.eml"))
    assert report is not None
    assert report.reporting_mta == "relay.isp.example"
    assert report.original_envelope_id == "0b9e8d7c-6a5b-4c3d-9e2f-1a0b9c8d7e6f"
    (rcpt,) = report.recipients
    assert rcpt.final_recipient == "jdoe@closed.example"
    assert rcpt.original_recipient is None
    assert (rcpt.action, rcpt.status) == ("failed", "5.0.0")
    assert rcpt.diagnostic_code == "550 5.2.1 Mailbox disabled for this recipient"
    assert report.original_message_id == "<8a7b6c5d@sealpost.example>"


def test_delayed_with_rfc822_headers() -> None:
    report = parse_dsn(sample("dsn_delayed_headers_only.eml"))
    assert report is not None
    (rcpt,) = report.recipients
    assert (rcpt.action, rcpt.status) == ("delayed", "4.4.1")
    assert not rcpt.permanent
    assert rcpt.last_attempt_date == "Tue, 24 Nov 2026 07:58:31 +0000 (UTC)"
    assert rcpt.will_retry_until == "Sat, 28 Nov 2026 04:00:00 +0000 (UTC)"
    assert rcpt.diagnostic_code == (
        "connect to mx.far.example[203.0.113.50]:25: Connection timed out"
    )
    # The returned headers come as text/rfc822-headers.
    assert report.original_message_id == "<delayed-1@sender.example>"
    assert report.original_headers["X-Sealpost-Communication"] == (
        "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
    )


def test_missing_fields_give_a_partial_report() -> None:
    report = parse_dsn(sample("dsn_missing_fields.eml"))
    assert report is not None
    assert report.reporting_mta == "odd.example"
    assert report.original_message_id is None
    assert dict(report.original_headers) == {}
    got = [(r.final_recipient, r.action, r.status, r.inferred) for r in report.recipients]
    assert got == [
        # no Action and no Status: both inferred from the diagnostic's 5.2.2
        ("first@far.example", "failed", "5.2.2", ("status", "action")),
        # (a block with no recipient at all is skipped)
        ("third@far.example", "delayed", "4.0.0", ("status",)),
        # no Final-Recipient: the Original-Recipient stands in
        ("fourth@far.example", "failed", "5.7.1", ("action",)),
    ]


def test_status_part_the_stdlib_cannot_regenerate_is_still_read() -> None:
    raw = (
        crlf(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
            "Final-Recipient: rfc822; a@b.example\nContent-Type: multipart/mixed\n"
            "Action: failed\nStatus: 5.1.1\nWill-Re"
        )
        + b"\xffry: x\r\n\r\n--B--\r\n"
    )
    report = parse_dsn(raw)
    assert report is not None
    assert [(r.final_recipient, r.action, r.status) for r in report.recipients] == [
        ("a@b.example", "failed", "5.1.1")
    ]


def test_missing_per_message_block_keeps_the_first_recipient() -> None:
    raw = crlf(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Final-Recipient: rfc822; a@far.example\nAction: failed\n"
        "Diagnostic-Code: smtp; 550 rejected by 192.2.5.100 (policy 5.7.1)\n"
        "--B--\n"
    )
    report = parse_dsn(raw)
    assert report is not None and report.reporting_mta is None
    (rcpt,) = report.recipients
    assert (rcpt.final_recipient, rcpt.status, rcpt.inferred) == (
        "a@far.example",
        "5.7.1",  # not the "2.5.100" inside the IP address
        ("status",),
    )


def test_base64_encoded_status_part() -> None:
    status = crlf(
        "Reporting-MTA: dns; gw.example\n\n"
        "Final-Recipient: rfc822; x@far.example\nAction: failed\nStatus: 5.1.10\n"
    )
    raw = crlf(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
        "--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(status).decode("ascii")
        + "--B--\n"
    )
    report = parse_dsn(raw)
    assert report is not None
    assert report.reporting_mta == "gw.example"
    assert [(r.final_recipient, r.status) for r in report.recipients] == [
        ("x@far.example", "5.1.10")
    ]


def test_global_delivery_status_with_utf8() -> None:
    raw = crlf(
        "Content-Type: multipart/report; report-type=global-delivery-status; boundary=B\n\n"
        "--B\nContent-Type: message/global-delivery-status\n\n"
        "Reporting-MTA: dns; mx.例子.example\n\n"
        "Final-Recipient: utf-8; 李雷@例子.example\nAction: failed\nStatus: 5.1.1\n"
        "--B\nContent-Type: message/global-headers\n\n"
        "Message-ID: <g@sender.example>\nSubject: привет\n\n"
        "--B--\n"
    )
    report = parse_dsn(raw)
    assert report is not None
    assert report.recipients[0].final_recipient == "李雷@例子.example"
    assert report.original_message_id == "<g@sender.example>"


@pytest.mark.parametrize(
    "raw",
    [
        crlf("From: a@b.example\nSubject: hello\n\nnot a bounce\n"),
        # A free-text bounce with no machine-readable part: VERP still identifies it.
        crlf(
            "From: MAILER-DAEMON@old.example\nSubject: failure notice\n\n"
            "Hi. This is the qmail-send program. I'm afraid I wasn't able to deliver your\n"
            "message to the following addresses.\n\n<x@far.example>:\nSorry, no mailbox here.\n"
        ),
        # A read receipt (RFC 8098) is a multipart/report too, but not a delivery status.
        crlf(
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=B\n\n"
            "--B\nContent-Type: message/disposition-notification\n\n"
            "Final-Recipient: rfc822; x@far.example\nDisposition: manual-action/MDN-sent-manually;"
            " displayed\n--B--\n"
        ),
        crlf("Content-Type: multipart/report; boundary=B\n\n--B\n\nno status\n--B--\n"),
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\r\n",
    ],
)
def test_not_a_dsn_gives_none(raw: bytes) -> None:
    assert parse_dsn(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        # report-type right, but the boundary is missing: nothing machine-readable.
        crlf("Content-Type: multipart/report; report-type=delivery-status\n\n--B\n\nx\n"),
        # delivery-status part that is pure garbage.
        crlf(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
            "--B\nContent-Type: message/delivery-status\n\n\x00\x01: :\n:::\n\n\n--B--\n"
        ),
        # truncated in the middle of the status part.
        crlf(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
            "Final-Recip"
        ),
        # status part encoded as base64 that is not base64.
        crlf(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
            "--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
            "!!!!\n--B--\n"
        ),
    ],
)
def test_malformed_reports_are_partial_and_never_raise(raw: bytes) -> None:
    report = parse_dsn(raw)
    assert report is None or isinstance(report, DeliveryReport)
    if report is not None:
        assert all(r.final_recipient for r in report.recipients)


DSN_FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n",
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Type: text/rfc822-headers\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Final-Recipient: rfc822; a@b\r\n",
        b"Original-Recipient: ;\r\n",
        b"Action: failed\r\n",
        b"Status: 5.1.1\r\n",
        b"Status: 9.9\r\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 no\r\n",
        b"Message-ID: <x@y>\r\n",
        b"\r\n",
        b"--B\r\n",
        b"--B--\r\n",
        b" continued\r\n",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(DSN_FRAGMENTS | st.binary(max_size=12), max_size=40))
def test_parse_dsn_never_raises(fragments: list[bytes]) -> None:
    report = parse_dsn(b"".join(fragments))
    assert report is None or isinstance(report, DeliveryReport)
