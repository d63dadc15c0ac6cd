"""All SQL of the archive's core: messages (inserted once, never updated but for their index
state and a purge), sightings, threads and their keys, agents, teams, settings, the agents'
notifications.  Methods ending in ``_in`` run in the caller's transaction."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    false,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError

from sealpost.archive.model import Agent, ArchivedMessage, Team, Thread, Viewer
from sealpost.archive.tables import (
    archive_agents,
    archive_messages,
    archive_notifications,
    archive_settings,
    archive_sightings,
    archive_team_members,
    archive_teams,
    archive_thread_keys,
    archive_threads,
)
from sealpost.ledger.repository import as_utc, as_utc_or_none
from sealpost.tenants.tables import tenant_domains

m = archive_messages.c
t = archive_threads.c


def message_from_row(row: Any) -> ArchivedMessage:
    return ArchivedMessage(
        id=row.id,
        tenant_id=row.tenant_id,
        sha256=row.sha256,
        size=int(row.size),
        message_id=row.message_id,
        subject=row.subject,
        from_address=row.from_address,
        to_addresses=tuple(json.loads(row.to_addresses)),
        cc_addresses=tuple(json.loads(row.cc_addresses)),
        sent_at=as_utc_or_none(row.sent_at),
        archived_at=as_utc(row.archived_at),
        direction=row.direction,
        thread_id=row.thread_id,
        has_attachments=bool(row.has_attachments),
        attachment_names=tuple(json.loads(row.attachment_names)),
        record_id=row.record_id,
        source_kind=row.source_kind,
        index_state=row.index_state,
        malformed=row.malformed,
        purged_at=as_utc_or_none(row.purged_at),
    )


def thread_from_row(row: Any) -> Thread:
    return Thread(
        id=row.id,
        tenant_id=row.tenant_id,
        subject=row.subject,
        customer_address=row.customer_address,
        owner_agent_id=row.owner_agent_id,
        team_id=row.team_id,
        waiting_on=row.waiting_on,
        message_count=int(row.message_count),
        created_at=as_utc(row.created_at),
        last_message_at=as_utc(row.last_message_at),
        last_inbound_at=as_utc_or_none(row.last_inbound_at),
        last_outbound_at=as_utc_or_none(row.last_outbound_at),
    )


def visible_threads(viewer: Viewer) -> ColumnElement[bool]:
    """The threads a viewer may see (on ``archive_threads``): all of its tenant's for the
    administrator, supervisors and auditors; for an agent, its own, its teams' and the
    unassigned ones (the shared queue)."""
    clause: ColumnElement[bool] = t.tenant_id == viewer.tenant_id
    agent = viewer.agent
    if agent is None or agent.role in ("supervisor", "auditor"):
        return clause
    mine = or_(
        t.owner_agent_id == agent.id,
        and_(t.owner_agent_id.is_(None), t.team_id.is_(None)),
        t.team_id.in_(agent.team_ids) if agent.team_ids else false(),
    )
    return and_(clause, mine)


def visible_messages(viewer: Viewer) -> ColumnElement[bool]:
    """The messages a viewer may see (on ``archive_messages``): those of threads it sees."""
    if viewer.sees_everything:
        return m.tenant_id == viewer.tenant_id
    threads = select(t.id).where(visible_threads(viewer))
    return and_(m.tenant_id == viewer.tenant_id, m.thread_id.in_(threads))


class ArchiveRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- settings ------------------------------------------------------------------------------

    def settings_in(self, conn: Connection, tenant_id: str, now: datetime) -> Any:
        """The tenant's archive settings row, created with a fresh journal token on first use."""
        s = archive_settings.c
        row = conn.execute(select(archive_settings).where(s.tenant_id == tenant_id)).first()
        if row is not None:
            return row
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(archive_settings).values(
                        tenant_id=tenant_id,
                        journal_token=secrets.token_hex(16),
                        own_domains="[]",
                        updated_at=now,
                    )
                )
        except IntegrityError:  # another process created it first
            pass
        return conn.execute(select(archive_settings).where(s.tenant_id == tenant_id)).one()

    def update_settings_in(
        self, conn: Connection, tenant_id: str, now: datetime, **values: Any
    ) -> Any:
        self.settings_in(conn, tenant_id, now)
        conn.execute(
            update(archive_settings)
            .where(archive_settings.c.tenant_id == tenant_id)
            .values(updated_at=now, **values)
        )
        return self.settings_in(conn, tenant_id, now)

    def tenant_for_journal_token(self, token: str) -> str | None:
        s = archive_settings.c
        with self.engine.connect() as conn:
            found: str | None = conn.execute(
                select(s.tenant_id).where(s.journal_token == token)
            ).scalar()
        return found

    def own_domains_in(self, conn: Connection, tenant_id: str, now: datetime) -> set[str]:
        """The company's own mail domains: those set for the archive and its sending domains."""
        row = self.settings_in(conn, tenant_id, now)
        domains = {d.lower() for d in json.loads(row.own_domains)}
        sending = conn.execute(
            select(tenant_domains.c.domain).where(tenant_domains.c.tenant_id == tenant_id)
        ).scalars()
        return domains | {d.lower() for d in sending}

    # -- messages ------------------------------------------------------------------------------

    @staticmethod
    def lock_blob_in(conn: Connection, sha256: str) -> None:
        """Serialise archiving and deleting one blob (any tenant's): a transaction-scoped
        advisory lock on PostgreSQL; SQLite's write transactions are serial already."""
        if conn.dialect.name == "postgresql":
            key = int.from_bytes(bytes.fromhex(sha256)[:8], "big", signed=True)
            conn.execute(sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def by_content_in(self, conn: Connection, tenant_id: str, sha256: str) -> Any:
        return conn.execute(
            select(archive_messages).where(m.tenant_id == tenant_id, m.sha256 == sha256)
        ).first()

    def insert_message_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_messages).values(**row))

    def add_sighting_in(
        self,
        conn: Connection,
        *,
        message_id: str,
        tenant_id: str,
        source_kind: str,
        source_ref: str,
        now: datetime,
    ) -> bool:
        """Record that a source gave these bytes (again); False when this very source and
        reference were already recorded (a re-fetch after a crash)."""
        s = archive_sightings.c
        seen = conn.execute(
            select(s.id).where(
                s.message_id == message_id,
                s.source_kind == source_kind,
                s.source_ref == source_ref,
            )
        ).first()
        if seen is not None:
            return False
        conn.execute(
            insert(archive_sightings).values(
                id=str(uuid.uuid4()),
                message_id=message_id,
                tenant_id=tenant_id,
                source_kind=source_kind,
                source_ref=source_ref,
                seen_at=now,
            )
        )
        return True

    def sightings(self, message_id: str) -> list[dict[str, Any]]:
        s = archive_sightings.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.source_kind, s.source_ref, s.seen_at)
                .where(s.message_id == message_id)
                .order_by(s.seen_at, s.id)
            ).all()
        return [
            {"source": r.source_kind, "ref": r.source_ref, "seen_at": as_utc(r.seen_at)}
            for r in rows
        ]

    def message(self, viewer: Viewer, message_id: str) -> ArchivedMessage | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(archive_messages).where(m.id == message_id, visible_messages(viewer))
            ).first()
        return None if row is None else message_from_row(row)

    def messages(
        self,
        viewer: Viewer,
        *,
        thread_id: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[ArchivedMessage]:
        """Newest first, by keyset (a row comparison, which the index serves)."""
        query = select(archive_messages).where(visible_messages(viewer))
        if thread_id is not None:
            query = query.where(m.thread_id == thread_id)
        if after is not None:
            query = query.where(tuple_(m.archived_at, m.id) < tuple_(*after))
        query = query.order_by(m.archived_at.desc(), m.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [message_from_row(r) for r in conn.execute(query)]

    # -- threads -------------------------------------------------------------------------------

    def thread_for_keys_in(
        self, conn: Connection, tenant_id: str, keys: Sequence[str]
    ) -> str | None:
        """The thread the first known key leads to (keys in order of preference)."""
        if not keys:
            return None
        k = archive_thread_keys.c
        rows = dict(
            conn.execute(
                select(k.key, k.thread_id).where(k.tenant_id == tenant_id, k.key.in_(keys))
            ).all()
        )
        for key in keys:
            if key in rows:
                return str(rows[key])
        return None

    def thread_for_subject_in(
        self, conn: Connection, tenant_id: str, key: str, customer: str, since: datetime
    ) -> str | None:
        found: str | None = conn.execute(
            select(t.id)
            .where(
                t.tenant_id == tenant_id,
                t.subject_key == key,
                t.customer_address == customer,
                t.last_message_at >= since,
            )
            .order_by(t.last_message_at.desc())
            .limit(1)
        ).scalar()
        return found

    def add_thread_keys_in(
        self, conn: Connection, tenant_id: str, thread_id: str, keys: Iterable[str]
    ) -> None:
        """Point keys at the thread; a key already pointing elsewhere keeps its thread (the
        first thread a Message-ID was seen in stays its thread)."""
        k = archive_thread_keys.c
        wanted = sorted(set(keys))
        if not wanted:
            return
        known = set(
            conn.execute(select(k.key).where(k.tenant_id == tenant_id, k.key.in_(wanted))).scalars()
        )
        new = [key for key in wanted if key not in known]
        for key in new:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(archive_thread_keys).values(
                            tenant_id=tenant_id, key=key, thread_id=thread_id
                        )
                    )
            except IntegrityError:
                pass

    def create_thread_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_threads).values(**row))

    def lock_thread_in(self, conn: Connection, thread_id: str) -> Thread | None:
        query = select(archive_threads).where(t.id == thread_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else thread_from_row(row)

    def update_thread_in(self, conn: Connection, thread_id: str, **values: Any) -> None:
        conn.execute(update(archive_threads).where(t.id == thread_id).values(**values))

    def thread(self, viewer: Viewer, thread_id: str) -> Thread | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(archive_threads).where(t.id == thread_id, visible_threads(viewer))
            ).first()
        return None if row is None else thread_from_row(row)

    def threads(
        self,
        viewer: Viewer,
        *,
        owner_agent_id: str | None = None,
        unassigned: bool = False,
        waiting_on: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Thread]:
        query = select(archive_threads).where(visible_threads(viewer))
        if owner_agent_id is not None:
            query = query.where(t.owner_agent_id == owner_agent_id)
        if unassigned:
            query = query.where(t.owner_agent_id.is_(None))
        if waiting_on is not None:
            query = query.where(t.waiting_on == waiting_on)
        if after is not None:
            query = query.where(tuple_(t.last_message_at, t.id) < tuple_(*after))
        query = query.order_by(t.last_message_at.desc(), t.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [thread_from_row(r) for r in conn.execute(query)]

    # -- agents and teams ----------------------------------------------------------------------

    def agent_in(self, conn: Connection, tenant_id: str, agent_id: str) -> Agent | None:
        a = archive_agents.c
        row = conn.execute(
            select(archive_agents).where(a.id == agent_id, a.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        teams = conn.execute(
            select(archive_team_members.c.team_id).where(archive_team_members.c.agent_id == row.id)
        ).scalars()
        return Agent(
            id=row.id,
            tenant_id=row.tenant_id,
            email=row.email,
            name=row.name,
            role=row.role,
            team_ids=tuple(sorted(teams)),
            created_at=as_utc(row.created_at),
            disabled_at=as_utc_or_none(row.disabled_at),
        )

    def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        with self.engine.connect() as conn:
            return self.agent_in(conn, tenant_id, agent_id)

    def agent_by_email_in(self, conn: Connection, tenant_id: str, email: str) -> Agent | None:
        a = archive_agents.c
        found = conn.execute(
            select(a.id).where(
                a.tenant_id == tenant_id, a.email == email.lower(), a.disabled_at.is_(None)
            )
        ).scalar()
        return None if found is None else self.agent_in(conn, tenant_id, found)

    def agents(self, tenant_id: str) -> list[Agent]:
        a = archive_agents.c
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(a.id).where(a.tenant_id == tenant_id).order_by(a.email)
            ).scalars()
            return [agent for i in list(ids) if (agent := self.agent_in(conn, tenant_id, i))]

    def insert_agent_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_agents).values(**row))

    def update_agent_in(self, conn: Connection, agent_id: str, **values: Any) -> None:
        conn.execute(update(archive_agents).where(archive_agents.c.id == agent_id).values(**values))

    def team_in(self, conn: Connection, tenant_id: str, team_id: str) -> Team | None:
        tm = archive_teams.c
        row = conn.execute(
            select(archive_teams).where(tm.id == team_id, tm.tenant_id == tenant_id)
        ).first()
        if row is None:
            return None
        members = conn.execute(
            select(archive_team_members.c.agent_id)
            .where(archive_team_members.c.team_id == row.id)
            .order_by(archive_team_members.c.agent_id)
        ).scalars()
        return Team(row.id, row.tenant_id, row.name, tuple(members))

    def teams(self, tenant_id: str) -> list[Team]:
        tm = archive_teams.c
        with self.engine.connect() as conn:
            ids = list(
                conn.execute(
                    select(tm.id).where(tm.tenant_id == tenant_id).order_by(tm.name)
                ).scalars()
            )
            return [team for i in ids if (team := self.team_in(conn, tenant_id, i))]

    def insert_team_in(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(insert(archive_teams).values(**row))

    def set_members_in(self, conn: Connection, team_id: str, agent_ids: Sequence[str]) -> None:
        conn.execute(delete(archive_team_members).where(archive_team_members.c.team_id == team_id))
        if agent_ids:
            conn.execute(
                insert(archive_team_members),
                [{"team_id": team_id, "agent_id": a} for a in sorted(set(agent_ids))],
            )

    # -- notifications -------------------------------------------------------------------------

    def notify_in(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        agent_id: str,
        kind: str,
        text: str,
        now: datetime,
        thread_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        conn.execute(
            insert(archive_notifications).values(
                id=str(uuid.uuid4()),
                tenant_id=tenant_id,
                agent_id=agent_id,
                kind=kind,
                thread_id=thread_id,
                message_id=message_id,
                text=text,
                created_at=now,
            )
        )

    def notifications(
        self, viewer: Viewer, *, unread_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        """The agent's notifications about threads it may still see: one about a thread
        since given to another team's agent no longer shows its subject or customer."""
        assert viewer.agent is not None
        n = archive_notifications.c
        query = select(archive_notifications).where(
            n.tenant_id == viewer.tenant_id,
            n.agent_id == viewer.agent.id,
            or_(
                n.thread_id.is_(None), n.thread_id.in_(select(t.id).where(visible_threads(viewer)))
            ),
        )
        query = query.where(n.read_at.is_(None) if unread_only else true())
        query = query.order_by(n.created_at.desc(), n.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "thread_id": r.thread_id,
                "message_id": r.message_id,
                "text": r.text,
                "created_at": as_utc(r.created_at),
                "read_at": as_utc_or_none(r.read_at),
            }
            for r in rows
        ]

    def mark_read(self, tenant_id: str, agent_id: str, ids: Sequence[str], now: datetime) -> int:
        n = archive_notifications.c
        with self.engine.begin() as conn:
            return conn.execute(
                update(archive_notifications)
                .where(
                    n.tenant_id == tenant_id,
                    n.agent_id == agent_id,
                    n.id.in_(ids),
                    n.read_at.is_(None),
                )
                .values(read_at=now)
            ).rowcount
