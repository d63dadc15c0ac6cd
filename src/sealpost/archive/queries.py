"""A search query as legal holds and exports use it, and the port that answers it.

The archive's full-text search (``ArchiveSearch.matching_ids``) plugs in through
:class:`QueryMatcher`; :class:`ColumnMatcher` is the small matcher over the columns of
``archive_messages`` used until then (the subject as text; the filters exactly), and in tests.
Both answer with ids of the tenant's messages only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, and_, func, or_, select

from sealpost.archive.model import DIRECTIONS
from sealpost.archive.tables import archive_messages, archive_team_members, archive_threads
from sealpost.errors import InvalidInput
from sealpost.ledger.repository import as_utc

MAX_MATCHES = 100_000
"""A hold or an export covers at most this many messages: split a larger case."""


@dataclass(frozen=True)
class SearchQuery:
    """Free text and filters, all optional; every filter given must hold (AND)."""

    text: str | None = None
    from_address: str | None = None
    to_address: str | None = None
    after: datetime | None = None
    """Archived at or after (UTC)."""
    before: datetime | None = None
    """Archived before (UTC)."""
    thread_id: str | None = None
    agent_id: str | None = None
    """Threads owned by this agent."""
    team_id: str | None = None
    """Threads of this team, or owned by one of its members."""
    has_attachment: bool | None = None
    direction: str | None = None

    def __post_init__(self) -> None:
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise InvalidInput(f"query.direction: one of {', '.join(DIRECTIONS)}")
        if self.after and self.before and self.after >= self.before:
            raise InvalidInput("query.after must be earlier than query.before")
        if self.is_empty():
            raise InvalidInput("query: give at least the text or one filter")

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) in (None, "") for f in fields(self))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, ISO 8601 times), as stored and recorded."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            out[key] = as_utc(value).isoformat() if isinstance(value, datetime) else value
        return json.dumps(out, sort_keys=True, ensure_ascii=False)

    def public(self) -> dict[str, Any]:
        """The query under the names the API takes (``from``, ``to``), as shown and exported."""
        names = {"from_address": "from", "to_address": "to"}
        return {names.get(k, k): v for k, v in json.loads(self.to_json()).items()}

    @classmethod
    def from_json(cls, text: str) -> SearchQuery:
        data = json.loads(text)
        for key in ("after", "before"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)


class QueryMatcher(Protocol):
    """Which of the tenant's archived messages a query matches (purged messages included: a
    hold or export lists them too).  Without ``among``: every match, or ``InvalidInput`` when
    there are more than :data:`MAX_MATCHES` (never a silent cut: a hold would miss mail);
    with ``among``: which of those ids match, however many the query matches overall."""

    def matching_ids(
        self, tenant_id: str, query: SearchQuery, among: Sequence[str] | None = None
    ) -> list[str]: ...


class ColumnMatcher:
    """A query over the columns of ``archive_messages``: ``text`` is a case-insensitive
    substring of the subject; addresses are compared lowercased (they are stored so)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def matching_ids(
        self, tenant_id: str, query: SearchQuery, among: Sequence[str] | None = None
    ) -> list[str]:
        m = archive_messages.c
        t = archive_threads.c
        clauses: list[Any] = [m.tenant_id == tenant_id]
        if query.text:
            clauses.append(func.lower(m.subject).contains(query.text.lower(), autoescape=True))
        if query.from_address:
            sender = query.from_address.strip().lower()
            if sender.startswith("@"):  # any sender of that domain, as the search takes it
                clauses.append(m.from_address.endswith(sender, autoescape=True))
            else:
                clauses.append(m.from_address == sender)
        if query.to_address:
            quoted = json.dumps(query.to_address.strip().lower())
            clauses.append(
                or_(
                    m.to_addresses.contains(quoted, autoescape=True),
                    m.cc_addresses.contains(quoted, autoescape=True),
                )
            )
        if query.after is not None:
            clauses.append(m.archived_at >= query.after)
        if query.before is not None:
            clauses.append(m.archived_at < query.before)
        if query.thread_id:
            clauses.append(m.thread_id == query.thread_id)
        if query.has_attachment is not None:
            clauses.append(m.has_attachments == query.has_attachment)
        if query.direction:
            clauses.append(m.direction == query.direction)
        if query.agent_id or query.team_id:
            owned = select(t.id).where(t.tenant_id == tenant_id)
            if query.agent_id:
                owned = owned.where(t.owner_agent_id == query.agent_id)
            if query.team_id:
                members = select(archive_team_members.c.agent_id).where(
                    archive_team_members.c.team_id == query.team_id
                )
                owned = owned.where(or_(t.team_id == query.team_id, t.owner_agent_id.in_(members)))
            clauses.append(m.thread_id.in_(owned))
        if among is not None:
            found: list[str] = []
            ids = list(among)
            with self.engine.connect() as conn:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    found += conn.execute(
                        select(m.id).where(and_(*clauses), m.id.in_(chunk))
                    ).scalars()
            return found
        statement = (
            select(m.id).where(and_(*clauses)).order_by(m.archived_at, m.id).limit(MAX_MATCHES + 1)
        )
        with self.engine.connect() as conn:
            matched = list(conn.execute(statement).scalars())
        if len(matched) > MAX_MATCHES:
            raise InvalidInput(
                f"query: matches more than {MAX_MATCHES:,} messages; narrow it (dates, "
                "address) and place several holds or make several exports"
            )
        return matched
