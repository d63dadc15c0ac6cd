"""Fuzzing DSN parsing (RFC 3464): any bounce gives a report or None, quickly, never a crash.

A bounce is written by any MTA or by an attacker; what it says becomes NonDelivery evidence.
So beyond "no exception", every value read from it must fit a record: text that is valid
Unicode (RFC 8785), an RFC 3463 status code, one of the RFC 3464 actions.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import example, given

from sealpost.communications.email.dsn import DeliveryReport, parse_dsn
from sealpost.ledger.records import Party, Reason, Subject, new_record, record_from_json
from tests.fuzz.mutations import fuzz_settings, hostile_bytes, time_bound
from tests.fuzz.samples import MIME_TOKENS, crlf, dsn_seeds, mime_seeds

# a failing example of 64 KiB is printed all the same; the warning would fail the run
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}

GLOBAL_DSN = crlf(
    "From: MAILER-DAEMON@mx.example\n"
    'Content-Type: multipart/report; report-type=global-delivery-status; boundary="b"\n\n'
    "--b\nContent-Type: message/global-delivery-status\n"
    "Content-Transfer-Encoding: base64\n\n"
    "UmVwb3J0aW5nLU1UQTogZG5zOyBteC5leGFtcGxlCgpGaW5hbC1SZWNpcGllbnQ6IHV0Zi04OyBqb3PD"
    "qUBleGFtcGxlLmNvbQpBY3Rpb246IGZhaWxlZApTdGF0dXM6IDUuMS4xCg==\n"
    "--b\nContent-Type: message/global-headers\n\nMessage-ID: <x@y>\n--b--\n"
)
"""An RFC 6533 report with a base64 status part and a UTF-8 recipient."""

SEEDS = [*dsn_seeds(), GLOBAL_DSN, *mime_seeds()[:2]]


def _non_delivery(report: DeliveryReport) -> None:
    """The NonDelivery record the bounce processor writes for each failed recipient, built and
    read back as a verifier would: the values of a hostile bounce must fit evidence."""
    for status in report.recipients:
        record = new_record(
            tenant_id="t",
            event="NonDelivery",
            subject=Subject("communication", "c"),
            submission_time=datetime.now(UTC),
            recipient=Party(status.final_recipient),
            reasons=(Reason(f"dsn-{status.status}", status.diagnostic_code or "x"),),
            details={
                "dsn": {
                    "reporting_mta": report.reporting_mta,
                    "final_recipient": status.final_recipient,
                    "action": status.action,
                    "status": status.status,
                    "diagnostic_code": status.diagnostic_code,
                    "remote_mta": status.remote_mta,
                }
            },
        )
        canonical = record.canonical()
        assert record_from_json(json.loads(canonical)).canonical() == canonical


@fuzz_settings(400, deadline_ms=3000)
@given(hostile_bytes(SEEDS, MIME_TOKENS))
@example(GLOBAL_DSN)
@example(
    crlf(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Final-Recipient: rfc822; a@b\nStatus: 5.1.1\nDiagnostic-Code: smtp; \xff\xfe\n--b--\n"
    ).replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe")
)
def test_any_bounce_gives_a_report_that_fits_evidence_or_none(raw: bytes) -> None:
    with time_bound(20):
        report = parse_dsn(raw)
    if report is None:
        return
    assert isinstance(report, DeliveryReport)
    for status in report.recipients:
        assert status.final_recipient and STATUS.match(status.status)
        assert status.action in ACTIONS
        assert status.permanent == (status.action == "failed")
    _non_delivery(report)
    assert report.original_message_id is None or report.original_message_id.startswith("<")
