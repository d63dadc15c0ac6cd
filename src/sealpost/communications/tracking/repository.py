"""All SQL of open and click tracking."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from sealpost.communications.tables import communications
from sealpost.communications.tracking.tables import tracking_settings, tracking_tokens
from sealpost.db.engine import is_sqlite, reading, write_transaction
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import as_utc, as_utc_or_none


@dataclass(frozen=True)
class TokenHit:
    """A token found for a hit, with what its record needs of the communication."""

    token_sha256: str
    kind: str
    link: int | None
    url: str | None
    hits: int
    unrecorded: int
    last_recorded_at: datetime | None
    communication_id: str
    tenant_id: str
    sender: str
    recipient: str
    message_id: str
    submitted_at: datetime
    delivered_at: datetime | None


class TrackingRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the tenant's choice ------------------------------------------------------------------

    def settings(self, tenant_id: str) -> tuple[bool, bool]:
        """(opens, clicks); both off when the tenant never chose."""
        s = tracking_settings.c
        with self.engine.connect() as conn:
            row = conn.execute(select(s.opens, s.clicks).where(s.tenant_id == tenant_id)).first()
        return (False, False) if row is None else (bool(row.opens), bool(row.clicks))

    def put_settings(self, tenant_id: str, opens: bool, clicks: bool, now: datetime) -> None:
        s = tracking_settings.c
        values = {"opens": int(opens), "clicks": int(clicks), "updated_at": now}
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(tracking_settings).where(s.tenant_id == tenant_id).values(**values)
            ).rowcount
            if not moved:
                conn.execute(insert(tracking_settings).values(tenant_id=tenant_id, **values))

    # -- tokens -------------------------------------------------------------------------------

    @staticmethod
    def insert_in(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """The tokens of new communications, in the submission's transaction."""
        if rows:
            conn.execute(insert(tracking_tokens), list(rows))

    @staticmethod
    def token_in(conn: Connection, token_sha256: str, kind: str) -> TokenHit | None:
        """The token and its communication, locked against concurrent hits (PostgreSQL;
        SQLite's write transaction is exclusive already)."""
        t, c = tracking_tokens.c, communications.c
        query = (
            select(
                t.token_sha256,
                t.kind,
                t.link,
                t.url,
                t.hits,
                t.unrecorded,
                t.last_recorded_at,
                c.id.label("communication_id"),
                c.tenant_id,
                c.sender,
                c.recipient,
                c.message_id,
                c.submitted_at,
                c.delivered_at,
            )
            .join(communications, c.id == t.communication_id)
            .where(t.token_sha256 == token_sha256, t.kind == kind)
        )
        if not is_sqlite(conn):
            query = query.with_for_update(of=tracking_tokens)
        row = conn.execute(query).first()
        if row is None:
            return None
        values = dict(row._mapping)
        values["last_recorded_at"] = as_utc_or_none(values["last_recorded_at"])
        values["submitted_at"] = as_utc(values["submitted_at"])
        values["delivered_at"] = as_utc_or_none(values["delivered_at"])
        return TokenHit(**values)

    @staticmethod
    def count_hit_in(
        conn: Connection,
        hit: TokenHit,
        now: datetime,
        record: EvidenceRecord | None,
    ) -> None:
        """Count one hit; with ``record``, write it, start a new window and make a new
        certificate version due (its "Non-essential tracking" section grows)."""
        t, c = tracking_tokens.c, communications.c
        values: dict[str, Any] = {"hits": t.hits + 1, "last_hit_at": now}
        if hit.hits == 0:
            values["first_hit_at"] = now
        if record is None:
            values["unrecorded"] = t.unrecorded + 1
        else:
            values.update(records=t.records + 1, unrecorded=0, last_recorded_at=now)
        conn.execute(
            update(tracking_tokens).where(t.token_sha256 == hit.token_sha256).values(**values)
        )
        if record is not None:
            append_evidence(conn, [record])
            conn.execute(
                update(communications)
                .where(c.id == hit.communication_id)
                .values(certificate_due=1, updated_at=now)
            )

    def hit(
        self,
        token_sha256: str,
        kind: str,
        now: datetime,
        decide: Callable[[TokenHit], EvidenceRecord | None],
    ) -> TokenHit | None:
        """Count a hit of a known token in one transaction; ``decide`` gives its record, or
        None inside a coalescing window.  None (nothing written) for an unknown token, found
        by a plain read first: guessed tokens never queue for the writer."""
        t = tracking_tokens.c
        with self.engine.connect() as conn:
            known = conn.execute(
                select(t.token_sha256).where(t.token_sha256 == token_sha256, t.kind == kind)
            ).first()
        if known is None:
            return None
        with write_transaction(self.engine) as conn:
            found = self.token_in(conn, token_sha256, kind)
            if found is None:
                return None
            self.count_hit_in(conn, found, now, decide(found))
        return found

    def tokens(self, tenant_id: str, communication_id: str) -> list[dict[str, Any]]:
        """Every token of a communication (the API's ``tracking`` view), pixel first."""
        t = tracking_tokens.c
        query = (
            select(
                t.kind,
                t.link,
                t.url,
                t.hits,
                t.records,
                t.first_hit_at,
                t.last_hit_at,
            )
            .where(t.tenant_id == tenant_id, t.communication_id == communication_id)
            .order_by(t.kind.desc(), t.link)
        )
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            values = dict(row._mapping)
            values["first_hit_at"] = as_utc_or_none(values["first_hit_at"])
            values["last_hit_at"] = as_utc_or_none(values["last_hit_at"])
            out.append(values)
        return out
