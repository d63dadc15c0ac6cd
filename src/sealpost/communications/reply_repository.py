"""All SQL of replies to communications: the replies themselves and the tenant's capture switch.

A reply's bytes, its row and its ``ReplyReceived`` record (with the event it implies) are
written in one transaction: a reply is never listed without its evidence, nor evidenced
without its bytes.  The same bytes for the same communication are one reply (an SMTP client
that never saw our 250 sends them again).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from sealpost.communications.contents import ContentStore
from sealpost.communications.tables import communication_replies, reply_settings
from sealpost.db.engine import write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import as_utc


@dataclass(frozen=True)
class Reply:
    """One message received in answer to a communication."""

    id: str
    tenant_id: str
    communication_id: str
    received_at: datetime
    sender: str
    envelope_from: str
    message_id: str | None
    subject: str | None
    content_sha256: str
    content_size: int
    automatic: bool
    automatic_reason: str | None
    matched_by: str
    """``reply_address`` (the signed address), ``in_reply_to`` or ``references``."""
    malformed: bool
    record_id: str


def _reply(row: Any) -> Reply:
    return Reply(
        id=row.id,
        tenant_id=row.tenant_id,
        communication_id=row.communication_id,
        received_at=as_utc(row.received_at),
        sender=row.sender,
        envelope_from=row.envelope_from,
        message_id=row.message_id,
        subject=row.subject,
        content_sha256=row.content_sha256,
        content_size=int(row.content_size),
        automatic=bool(row.automatic),
        automatic_reason=row.automatic_reason,
        matched_by=row.matched_by,
        malformed=bool(row.malformed),
        record_id=row.record_id,
    )


class ReplyRepository:
    CAPTURE_TTL_SECONDS = 5.0
    """How long a tenant's switch is remembered: every submission asks, and another replica's
    change is seen within this time (this process's own at once)."""

    def __init__(self, engine: Engine, contents: ContentStore) -> None:
        self.engine = engine
        self.contents = contents
        self._capture: dict[str, tuple[bool, float]] = {}

    # -- the tenant's switch ----------------------------------------------------------------

    def capture(self, tenant_id: str) -> bool:
        """Whether the tenant captures replies to its direct emails (default: no)."""
        cached = self._capture.get(tenant_id)
        if cached is not None and time.monotonic() - cached[1] < self.CAPTURE_TTL_SECONDS:
            return cached[0]
        query = select(reply_settings.c.capture).where(reply_settings.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            found = bool(conn.execute(query).scalar())
        if len(self._capture) > 10_000:
            self._capture.clear()
        self._capture[tenant_id] = (found, time.monotonic())
        return found

    def put_capture(self, tenant_id: str, capture: bool) -> None:
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            changed = conn.execute(
                update(reply_settings)
                .where(reply_settings.c.tenant_id == tenant_id)
                .values(capture=int(capture), updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(reply_settings).values(
                        tenant_id=tenant_id, capture=int(capture), updated_at=now
                    )
                )
        self._capture.pop(tenant_id, None)

    # -- replies ----------------------------------------------------------------------------

    def store(
        self, raw: bytes, rows: Sequence[dict[str, Any]], records: Sequence[EvidenceRecord]
    ) -> list[str]:
        """The bytes, the rows and their records, in one transaction; returns the ids of the
        replies stored (a row whose communication already has these bytes is skipped, with
        its record)."""
        self.contents.put_large([raw])
        stored: list[str] = []
        with write_transaction(self.engine) as conn:
            self.contents.put_in(conn, [raw])
            fresh_records = []
            for row, record in zip(rows, records, strict=True):
                seen = conn.execute(
                    select(communication_replies.c.id)
                    .where(communication_replies.c.communication_id == row["communication_id"])
                    .where(communication_replies.c.content_sha256 == row["content_sha256"])
                ).first()
                if seen is not None:
                    continue
                conn.execute(insert(communication_replies).values(**row))
                fresh_records.append(record)
                stored.append(row["id"])
            append_evidence(conn, fresh_records)
        return stored

    def list(self, tenant_id: str, communication_id: str) -> list[Reply]:
        c = communication_replies.c
        query = (
            select(communication_replies)
            .where(c.tenant_id == tenant_id, c.communication_id == communication_id)
            .order_by(c.received_at, c.id)
        )
        with self.engine.connect() as conn:
            return [_reply(r) for r in conn.execute(query)]

    def get(self, tenant_id: str, communication_id: str, reply_id: str) -> Reply | None:
        c = communication_replies.c
        query = select(communication_replies).where(
            c.tenant_id == tenant_id, c.communication_id == communication_id, c.id == reply_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _reply(row)

    def raw(self, reply: Reply) -> bytes:
        return self.contents.get(reply.content_sha256)
