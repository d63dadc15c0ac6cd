"""All SQL of answers to SMS: the replies, and the numbers that opted out.

A reply's row, its ``ReplyReceived`` record (with the event it implies) and, for STOP, the
opt-out are written in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select

from sealpost.db.engine import write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import as_utc
from sealpost.sms.tables import sms_messages, sms_opt_outs, sms_replies


@dataclass(frozen=True)
class SmsReply:
    id: str
    sms_id: str
    received_at: datetime
    phone: str
    destination: str
    text: str
    text_sha256: str
    provider: str
    raw_sha256: str
    opt_out: bool
    record_id: str


@dataclass(frozen=True)
class OptOut:
    phone: str
    opted_out_at: datetime
    keyword: str
    sms_id: str
    reply_id: str


class SmsReplyRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest_to(self, phone: str) -> list[tuple[str, str, str]]:
        """(id, sender, tenant id) of the newest SMS sent to ``phone`` (any tenant), newest
        first."""
        m = sms_messages.c
        query = (
            select(m.id, m.sender, m.tenant_id)
            .where(m.recipient == phone)
            .order_by(m.submitted_at.desc(), m.id.desc())
            .limit(20)
        )
        with self.engine.connect() as conn:
            return [(r.id, r.sender, r.tenant_id) for r in conn.execute(query)]

    def store(
        self,
        row: dict[str, Any],
        record: EvidenceRecord,
        opt_out: dict[str, Any] | None,
    ) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(insert(sms_replies).values(**row))
            if opt_out is not None:
                known = conn.execute(
                    select(sms_opt_outs.c.phone).where(
                        sms_opt_outs.c.tenant_id == opt_out["tenant_id"],
                        sms_opt_outs.c.phone == opt_out["phone"],
                    )
                ).first()
                if known is None:
                    conn.execute(insert(sms_opt_outs).values(**opt_out))
            append_evidence(conn, [record])

    def replies(self, tenant_id: str, sms_id: str) -> list[SmsReply]:
        r = sms_replies.c
        query = (
            select(sms_replies)
            .where(r.tenant_id == tenant_id, r.sms_id == sms_id)
            .order_by(r.received_at, r.id)
        )
        with self.engine.connect() as conn:
            return [
                SmsReply(
                    id=row.id,
                    sms_id=row.sms_id,
                    received_at=as_utc(row.received_at),
                    phone=row.phone,
                    destination=row.destination,
                    text=row.text,
                    text_sha256=row.text_sha256,
                    provider=row.provider,
                    raw_sha256=row.raw_sha256,
                    opt_out=bool(row.opt_out),
                    record_id=row.record_id,
                )
                for row in conn.execute(query)
            ]

    def opt_outs(self, tenant_id: str, limit: int, after: str | None = None) -> list[OptOut]:
        o = sms_opt_outs.c
        query = select(sms_opt_outs).where(o.tenant_id == tenant_id)
        if after is not None:
            query = query.where(o.phone > after)
        with self.engine.connect() as conn:
            return [
                OptOut(
                    phone=row.phone,
                    opted_out_at=as_utc(row.opted_out_at),
                    keyword=row.keyword,
                    sms_id=row.sms_id,
                    reply_id=row.reply_id,
                )
                for row in conn.execute(query.order_by(o.phone).limit(limit))
            ]

    def opted_out(self, tenant_id: str, phone: str) -> bool:
        o = sms_opt_outs.c
        query = select(func.count()).where(o.tenant_id == tenant_id, o.phone == phone)
        with self.engine.connect() as conn:
            return bool(conn.execute(query).scalar())
