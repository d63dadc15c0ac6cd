"""Evidence records as the email channel will write them, for tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from sealpost.ledger.records import (
    ContentInfo,
    ContentPart,
    EvidenceRecord,
    Party,
    Reason,
    Subject,
    new_record,
)
from sealpost.ledger.repository import record_row
from sealpost.ledger.tables import evidence_records


def submission(
    tenant_id: str, n: int = 0, *, communication_id: str | None = None
) -> EvidenceRecord:
    body = f"message {n}".encode()
    return new_record(
        tenant_id=tenant_id,
        event="SubmissionAcceptance",
        subject=Subject("communication", communication_id or str(uuid.uuid4())),
        sender=Party("alice@example.com", "Alice", {"method": "smtp-auth", "username": "alice"}),
        recipient=Party("bob@example.org"),
        application_identifier=f"<{n}.{uuid.uuid4().hex}@example.com>",
        content=ContentInfo(
            hashlib.sha256(body).hexdigest(),
            len(body),
            (ContentPart("text/plain", hashlib.sha256(body).hexdigest(), len(body)),),
        ),
        details={"smtp": {"reply": "250 2.0.0 queued", "client_ip": "127.0.0.1"}},
    )


def non_delivery(tenant_id: str, communication_id: str) -> EvidenceRecord:
    return new_record(
        tenant_id=tenant_id,
        event="NonDelivery",
        subject=Subject("communication", communication_id),
        recipient=Party("bob@example.org"),
        reasons=(Reason("smtp-5xx", "550 5.1.1 <bob@example.org>: user unknown"),),
    )


def store_old_record(engine: Engine, record: EvidenceRecord) -> None:
    """Store ``record`` as a record written before its catalogue was replaced: the ledger's
    appenders take current-version records only, so an old one reaches the table directly,
    as it did when it was new (then the sequencer seals it like any pending record)."""
    with engine.begin() as conn:
        conn.execute(insert(evidence_records), [record_row(record, datetime.now(UTC))])
