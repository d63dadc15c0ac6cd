"""The certificate's line for a mail server's 250 says which server accepted it and when, from
either catalogue, and never claims that the recipient received or read anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sealpost.communications.certificates import summarize
from sealpost.ledger.repository import TimelineEntry

WHEN = datetime(2026, 11, 23, 10, 0, 2, tzinfo=UTC)


def _entry(event: str, version: int, kind: str) -> TimelineEntry:
    record: dict[str, Any] = {
        "version": version,
        "event": {"name": event},
        "details": {
            "remote": {"host": "mx.example", "ip": "192.0.2.25", "kind": kind},
            "tls": {"version": "TLSv1.3"},
            "reply": "250 2.0.0 Ok: queued as Q1",
        },
    }
    return TimelineEntry("r1", event, WHEN, record, True)


@pytest.mark.parametrize(
    ("event", "version", "kind"),
    [("RelayToNonERDS", 2, "mx"), ("RelayToNonERDS", 2, "route"), ("ContentConsignment", 1, "mx")],
)
def test_the_recipients_server_accepted_it(event: str, version: int, kind: str) -> None:
    line = summarize(_entry(event, version, kind))
    assert line == (
        "The recipient's mail server mx.example [192.0.2.25] accepted it at "
        "2026-11-23 10:00:02.000000 UTC (TLSv1.3): 250 2.0.0 Ok: queued as Q1"
    )
    assert "received" not in line.lower() and "delivered" not in line.lower()


@pytest.mark.parametrize(("event", "version"), [("RelayToNonERDS", 2), ("RelayAcceptance", 1)])
def test_a_smarthost_is_not_the_recipients_server(event: str, version: int) -> None:
    line = summarize(_entry(event, version, "smarthost"))
    assert line.startswith("The relay (smarthost, not the recipient's server) mx.example")
    assert "accepted it at 2026-11-23 10:00:02.000000 UTC" in line


def test_a_version_2_content_consignment_is_not_read_as_a_mail_servers_250() -> None:
    assert "mail server" not in summarize(_entry("ContentConsignment", 2, "mx"))
