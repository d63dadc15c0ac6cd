"""All SQL of the access kit: links and sessions, one-time code challenges.

Tokens are stored only as the SHA-256 of their 256-bit random value, codes only as an HMAC:
a database dump opens no page and reveals no code.  Every counter is taken atomically in the
caller's transaction (an ``UPDATE ... WHERE count < limit``), so parallel requests never get
more sends or checks than the limit.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sealpost.access.model import LINK, SESSION, Challenge, Grant, Holder
from sealpost.access.tables import access_challenges, access_links
from sealpost.db.engine import is_sqlite
from sealpost.ledger.repository import as_utc, as_utc_or_none


def token_digest(token: str) -> str:
    """Links and sessions are stored as the SHA-256 of their token only."""
    return hashlib.sha256(token.encode()).hexdigest()


def _holder_of(row: Any) -> Holder:
    return Holder(row.tenant_id, row.subject_type, row.subject_id, row.party_id)


def _is(table: Any, holder: Holder) -> Any:
    c = table.c
    return and_(
        c.tenant_id == holder.tenant_id,
        c.subject_type == holder.subject_type,
        c.subject_id == holder.subject_id,
        c.party_id == holder.party_id,
    )


class AccessRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- links and sessions --------------------------------------------------------------------

    @staticmethod
    def add_link_in(
        conn: Connection,
        holder: Holder,
        *,
        token: str,
        kind: str,
        now: datetime,
        expires_at: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        conn.execute(
            insert(access_links).values(
                token_sha256=token_digest(token),
                kind=kind,
                tenant_id=holder.tenant_id,
                subject_type=holder.subject_type,
                subject_id=holder.subject_id,
                party_id=holder.party_id,
                created_at=now,
                expires_at=expires_at,
                ip=ip,
                user_agent=user_agent,
            )
        )

    def grant(self, token: str, kind: str, subject_type: str) -> Grant | None:
        with self.engine.connect() as conn:
            return self.grant_in(conn, token, kind, subject_type)

    @staticmethod
    def grant_in(conn: Connection, token: str, kind: str, subject_type: str) -> Grant | None:
        """What ``token`` opens, if it is a ``kind`` token of a ``subject_type`` subject (a
        pickup link never opens a signing page)."""
        lk = access_links.c
        row = conn.execute(
            select(access_links).where(
                lk.token_sha256 == token_digest(token),
                lk.kind == kind,
                lk.subject_type == subject_type,
            )
        ).first()
        if row is None:
            return None
        return Grant(_holder_of(row), row.kind, as_utc(row.expires_at), as_utc_or_none(row.used_at))

    @staticmethod
    def use_link_in(conn: Connection, token: str, now: datetime) -> bool:
        """Single use: only the first opening of a link succeeds."""
        lk = access_links.c
        return bool(
            conn.execute(
                update(access_links)
                .where(
                    lk.token_sha256 == token_digest(token), lk.kind == LINK, lk.used_at.is_(None)
                )
                .values(used_at=now)
            ).rowcount
        )

    @staticmethod
    def end_sessions_in(conn: Connection, holder: Holder, now: datetime) -> None:
        lk = access_links.c
        conn.execute(
            update(access_links)
            .where(_is(access_links, holder), lk.kind == SESSION, lk.expires_at > now)
            .values(expires_at=now)
        )

    @staticmethod
    def revoke_links_in(conn: Connection, holder: Holder, now: datetime) -> None:
        lk = access_links.c
        conn.execute(
            update(access_links)
            .where(
                _is(access_links, holder),
                lk.kind == LINK,
                lk.used_at.is_(None),
                lk.expires_at > now,
            )
            .values(expires_at=now)
        )

    @staticmethod
    def links_since_in(conn: Connection, holder: Holder, since: datetime) -> int:
        lk = access_links.c
        return int(
            conn.execute(
                select(func.count()).where(
                    _is(access_links, holder), lk.kind == LINK, lk.created_at >= since
                )
            ).scalar_one()
        )

    # -- one-time codes ------------------------------------------------------------------------

    def challenge(self, holder: Holder) -> Challenge | None:
        with self.engine.connect() as conn:
            return self.challenge_in(conn, holder)

    @staticmethod
    def challenge_in(conn: Connection, holder: Holder) -> Challenge | None:
        row = conn.execute(select(access_challenges).where(_is(access_challenges, holder))).first()
        if row is None:
            return None
        return Challenge(
            holder=holder,
            channel=row.channel,
            code_hash=row.code_hash,
            expires_at=as_utc_or_none(row.expires_at),
            attempts=row.attempts,
            sends=row.sends,
            sent_to=row.sent_to,
            communication_id=row.communication_id,
            code_session=row.code_session,
        )

    @staticmethod
    def take_send_in(conn: Connection, holder: Holder, limit: int) -> bool:
        """Count a code about to be sent, atomically, unless ``limit`` were sent already."""
        insert_ = sqlite_insert if is_sqlite(conn) else pg_insert
        conn.execute(
            insert_(access_challenges)
            .values(
                tenant_id=holder.tenant_id,
                subject_type=holder.subject_type,
                subject_id=holder.subject_id,
                party_id=holder.party_id,
            )
            .on_conflict_do_nothing()
        )
        ch = access_challenges.c
        return bool(
            conn.execute(
                update(access_challenges)
                .where(_is(access_challenges, holder), ch.sends < limit)
                .values(sends=ch.sends + 1)
            ).rowcount
        )

    @staticmethod
    def set_challenge_in(conn: Connection, holder: Holder, **values: Any) -> None:
        conn.execute(
            update(access_challenges).where(_is(access_challenges, holder)).values(**values)
        )

    @staticmethod
    def take_attempt_in(conn: Connection, holder: Holder, limit: int) -> int | None:
        """Count one code check, atomically: the checks made so far including this one, or
        None when none is left."""
        ch = access_challenges.c
        taken = conn.execute(
            update(access_challenges)
            .where(_is(access_challenges, holder), ch.attempts < limit)
            .values(attempts=ch.attempts + 1)
        ).rowcount
        if not taken:
            return None
        return int(
            conn.execute(select(ch.attempts).where(_is(access_challenges, holder))).scalar_one()
        )
