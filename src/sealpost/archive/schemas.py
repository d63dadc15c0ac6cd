"""The archive API's request and response bodies (pydantic at the boundary only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from sealpost.api.text import EmailAddress, SingleLine
from sealpost.archive.model import Agent, ArchivedMessage, Team, Thread


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageOut(BaseModel):
    id: str
    sha256: str = Field(description="SHA-256 of the exact bytes archived (the .eml).")
    size: int
    message_id: str | None = Field(description="The Message-ID header, as sent (may be absent).")
    subject: str
    from_address: str
    to: list[str]
    cc: list[str]
    sent_at: datetime | None = Field(description="The Date header, when it is a valid date.")
    archived_at: datetime
    direction: str = Field(description="inbound, outbound or internal.")
    thread_id: str
    has_attachments: bool
    attachment_names: list[str]
    record_id: str = Field(description="The Archived evidence record: GET /v1/evidence/{id}.")
    source: str = Field(description="Where it was first seen: journal, imap, sealpost or api.")
    index_state: str
    malformed: str | None = Field(
        None, description="What is wrong with its MIME structure, if anything (kept as is)."
    )
    purged_at: datetime | None = None

    @classmethod
    def of(cls, m: ArchivedMessage) -> MessageOut:
        return cls(
            id=m.id,
            sha256=m.sha256,
            size=m.size,
            message_id=m.message_id,
            subject=m.subject,
            from_address=m.from_address,
            to=list(m.to_addresses),
            cc=list(m.cc_addresses),
            sent_at=m.sent_at,
            archived_at=m.archived_at,
            direction=m.direction,
            thread_id=m.thread_id,
            has_attachments=m.has_attachments,
            attachment_names=list(m.attachment_names),
            record_id=m.record_id,
            source=m.source_kind,
            index_state=m.index_state,
            malformed=m.malformed,
            purged_at=m.purged_at,
        )


class Sighting(BaseModel):
    source: str
    ref: str
    seen_at: datetime


class MessageDetailOut(MessageOut):
    sightings: list[Sighting] = Field(
        description="Every source that gave these bytes (deduplicated by content)."
    )


class IngestedOut(BaseModel):
    duplicate: bool = Field(description="These bytes were already archived for the tenant.")
    message: MessageOut


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class ThreadOut(BaseModel):
    id: str
    subject: str
    customer_address: str
    owner_agent_id: str | None
    team_id: str | None
    waiting_on: str = Field(description="us: the customer wrote last; customer.")
    message_count: int
    created_at: datetime
    last_message_at: datetime
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None

    @classmethod
    def of(cls, th: Thread) -> ThreadOut:
        return cls(
            id=th.id,
            subject=th.subject,
            customer_address=th.customer_address,
            owner_agent_id=th.owner_agent_id,
            team_id=th.team_id,
            waiting_on=th.waiting_on,
            message_count=th.message_count,
            created_at=th.created_at,
            last_message_at=th.last_message_at,
            last_inbound_at=th.last_inbound_at,
            last_outbound_at=th.last_outbound_at,
        )


class ThreadPage(BaseModel):
    items: list[ThreadOut]
    next_cursor: str | None


ObjectId = Annotated[SingleLine, Field(min_length=1, max_length=36)]
"""An id this API gave (no control character: PostgreSQL refuses a NUL in text)."""


class AssignBody(Strict):
    agent_id: ObjectId | None = None
    team_id: ObjectId | None = None
    reason: SingleLine | None = Field(None, max_length=500)


class AgentBody(Strict):
    email: EmailAddress
    name: SingleLine = Field("", max_length=200)
    role: SingleLine = Field(description="agent, supervisor or auditor.", max_length=16)


class AgentPatch(Strict):
    role: SingleLine | None = Field(None, max_length=16)
    disabled: StrictBool | None = None
    new_key: StrictBool = Field(False, description="Revoke the agent's keys and issue a new one.")


class AgentOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    team_ids: list[str]
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, a: Agent) -> AgentOut:
        return cls(
            id=a.id,
            email=a.email,
            name=a.name,
            role=a.role,
            team_ids=list(a.team_ids),
            created_at=a.created_at,
            disabled_at=a.disabled_at,
        )


class AgentCreated(AgentOut):
    api_key: str | None = Field(
        None, description="The agent's key, shown this once: it opens /v1/archive only."
    )


class TeamBody(Strict):
    name: SingleLine = Field(min_length=1, max_length=200)
    agent_ids: list[ObjectId] = Field(default_factory=list, max_length=1000)


class TeamMembersBody(Strict):
    agent_ids: list[ObjectId] = Field(max_length=1000)


class TeamOut(BaseModel):
    id: str
    name: str
    agent_ids: list[str]

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(id=team.id, name=team.name, agent_ids=list(team.agent_ids))


class SettingsBody(Strict):
    retention_days: int | None = Field(
        None, description="Keep each message this many days after archiving; null: forever."
    )
    own_domains: list[Annotated[SingleLine, Field(min_length=1, max_length=253)]] | None = Field(
        None, max_length=200
    )
    rotate_journal_token: StrictBool = Field(
        False,
        description="Give the journal address a new token: the old address is refused (550) "
        "from now on; configure the new one on the company's mail server.",
    )


class SettingsOut(BaseModel):
    journal_address: str = Field(
        description="Journal or BCC all of the company's mail here (the inbound SMTP port)."
    )
    retention_days: int | None
    own_domains: list[str]


class NotificationOut(BaseModel):
    id: str
    kind: str
    thread_id: str | None
    message_id: str | None
    text: str
    created_at: datetime
    read_at: datetime | None


class ReadBody(Strict):
    ids: list[ObjectId] = Field(min_length=1, max_length=500)
