"""The mail archive's facts: where a message came from, an archived message, a thread, an
agent, and what an agent may see (frozen dataclasses; the tables are in ``tables.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

SOURCE_KINDS = ("journal", "imap", "sealpost", "api")
"""Where a message reaches the archive: the SMTP journal address, an IMAP mailbox pulled,
Sealpost's own outgoing mail, or an upload through the API."""
DIRECTIONS = ("inbound", "outbound", "internal")
ROLES = ("agent", "supervisor", "auditor")
"""Agents' roles.  ``agent``: its own threads, its teams' and the unassigned ones;
``supervisor``: every thread, assigns them; ``auditor``: every thread, read-only except legal
holds and exports.  A tenant API key (no agent) is the tenant's administrator: everything."""

Direction = Literal["inbound", "outbound", "internal"]


@dataclass(frozen=True)
class Source:
    """One sighting's origin: ``kind`` (see :data:`SOURCE_KINDS`) and a reference within it
    (the IMAP mailbox, UIDVALIDITY and UID; the communication id; the journal's envelope)."""

    kind: str
    ref: str | None = None


@dataclass(frozen=True)
class ArchivedMessage:
    id: str
    tenant_id: str
    sha256: str
    size: int
    message_id: str | None
    subject: str
    from_address: str
    to_addresses: tuple[str, ...]
    cc_addresses: tuple[str, ...]
    sent_at: datetime | None
    archived_at: datetime
    direction: str
    thread_id: str
    has_attachments: bool
    attachment_names: tuple[str, ...]
    record_id: str
    source_kind: str
    index_state: str
    malformed: str | None = None
    purged_at: datetime | None = None


@dataclass(frozen=True)
class Ingested:
    """What an ingest did: the archived message, and whether these bytes were already
    archived for the tenant (then only a sighting was added)."""

    message: ArchivedMessage
    duplicate: bool


@dataclass(frozen=True)
class Thread:
    id: str
    tenant_id: str
    subject: str
    customer_address: str
    owner_agent_id: str | None
    team_id: str | None
    waiting_on: str
    """``us``: the customer wrote last (the service-level clock runs); ``customer``."""
    message_count: int
    created_at: datetime
    last_message_at: datetime
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None


@dataclass(frozen=True)
class Agent:
    id: str
    tenant_id: str
    email: str
    name: str
    role: str
    team_ids: tuple[str, ...]
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class Team:
    id: str
    tenant_id: str
    name: str
    agent_ids: tuple[str, ...]


@dataclass(frozen=True)
class Viewer:
    """Who is asking: the tenant's administrator (``agent`` None) or one of its agents."""

    tenant_id: str
    agent: Agent | None = None

    @property
    def role(self) -> str:
        return "admin" if self.agent is None else self.agent.role

    @property
    def sees_everything(self) -> bool:
        return self.agent is None or self.agent.role in ("supervisor", "auditor")


HOLD_KINDS = ("thread", "address", "query")


@dataclass(frozen=True)
class Hold:
    """A legal hold: while active (``released_at`` None) no message it covers is purged."""

    id: str
    tenant_id: str
    kind: str
    """``thread``, ``address`` (every message from or to it, later ones too) or ``query``."""
    thread_id: str | None
    address: str | None
    query: str | None
    """The query as canonical JSON (``queries.SearchQuery.to_json``)."""
    reason: str
    placed_by: str
    placed_at: datetime
    placed_record_id: str
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None
    released_record_id: str | None = None
    frozen_count: int = 0
    """For a query hold: the messages that matched when it was placed."""

    @property
    def active(self) -> bool:
        return self.released_at is None
