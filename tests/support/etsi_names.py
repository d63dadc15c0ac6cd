"""Issue 13's list of the 22 events of ETSI EN 319 522-3 Table 2, copied from the issue's text
(not imported from the code it checks), and a guard the whole suite runs under."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sealpost.ledger.repository as ledger_repository
from sealpost.ledger.records import EvidenceRecord

ETSI_BASE = "http://uri.etsi.org/19522/Event/"

TABLE_2_AS_THE_ISSUE_LISTS_IT = (
    "SubmissionAcceptance, SubmissionRejection, RelayAcceptance, RelayRejection, RelayFailure, "
    "NotificationForAcceptance, NotificationForAcceptanceFailure, ConsignmentAcceptance, "
    "ConsignmentRejection, AcceptanceRejectionExpiry, NotificationDelivered, ContentConsignment, "
    "ContentConsignmentFailure, ConsignmentNotification, ConsignmentNotificationFailure, "
    "NotificationAccessTracking, ContentAccessTracking, ContentHandover, ContentHandoverFailure, "
    "RelayToNonERDS, RelayToNonERDSFailure, ReceivedFromNonERDS"
)
TABLE_2 = tuple(n.strip() for n in TABLE_2_AS_THE_ISSUE_LISTS_IT.split(","))

emitted: set[str] = set()
"""Every ETSI event URI a record appended during this test session carried."""


def check_uri(uri: str, version: int) -> None:
    """An event under the ETSI URI must be one of the 22 (catalogue-1 records, built by the
    tests that prove old records still verify, excepted)."""
    if uri.startswith(ETSI_BASE):
        if version >= 2:
            assert uri[len(ETSI_BASE) :] in TABLE_2, f"{uri} is not an ETSI EN 319 522-3 event"
        emitted.add(uri)


@contextmanager
def guard_appended_records() -> Iterator[None]:
    """Check every record the ledger stores (``record_row`` is the one way in)."""
    original: Callable[[EvidenceRecord, datetime], dict[str, Any]] = ledger_repository.record_row

    def checked(record: EvidenceRecord, now: datetime) -> dict[str, Any]:
        check_uri(record.event.uri, record.version)
        return original(record, now)

    ledger_repository.record_row = checked  # type: ignore[assignment]
    try:
        yield
    finally:
        ledger_repository.record_row = original  # type: ignore[assignment]
