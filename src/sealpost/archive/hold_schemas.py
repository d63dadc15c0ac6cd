"""Request and response bodies of legal holds and exports (pydantic at the boundary only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from sealpost.api.text import MultiLine, SingleLine
from sealpost.archive.export import Export
from sealpost.archive.model import Hold
from sealpost.archive.queries import SearchQuery

Address = Field(None, min_length=3, max_length=320)
IdField = Field(None, min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")


class QueryBody(BaseModel):
    """Free text and filters; every filter given must hold."""

    model_config = ConfigDict(extra="forbid")

    text: SingleLine | None = Field(None, min_length=1, max_length=500)
    from_: SingleLine | None = Field(None, alias="from", min_length=3, max_length=320)
    to: SingleLine | None = Field(None, min_length=3, max_length=320)
    after: AwareDatetime | None = None
    before: AwareDatetime | None = None
    thread_id: str | None = IdField
    agent_id: str | None = IdField
    team_id: str | None = IdField
    has_attachment: StrictBool | None = None
    direction: Literal["inbound", "outbound", "internal"] | None = None

    def query(self) -> SearchQuery:
        return SearchQuery(
            text=self.text,
            from_address=self.from_,
            to_address=self.to,
            after=self.after,
            before=self.before,
            thread_id=self.thread_id,
            agent_id=self.agent_id,
            team_id=self.team_id,
            has_attachment=self.has_attachment,
            direction=self.direction,
        )


def query_out(stored: str | None) -> dict[str, Any] | None:
    """A stored query (``SearchQuery.to_json``) under the names the API takes."""
    return SearchQuery.from_json(stored).public() if stored else None


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["thread", "address", "query"]
    reason: MultiLine = Field(min_length=1, max_length=2000, description="Why: a case, a claim.")
    thread_id: str | None = IdField
    address: SingleLine | None = Field(
        None,
        min_length=3,
        max_length=320,
        description="A customer's address: every message from or to it, later ones too.",
    )
    query: QueryBody | None = Field(
        None, description="The messages it matches now are frozen into the hold."
    )


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: MultiLine = Field(min_length=1, max_length=2000)


class HoldOut(BaseModel):
    id: str
    kind: str
    thread_id: str | None
    address: str | None
    query: dict[str, Any] | None
    reason: str
    placed_by: str = Field(description="`admin` (the tenant's key) or `agent:<id>`.")
    placed_at: datetime
    placed_record_id: str = Field(description="The LegalHoldPlaced evidence record.")
    active: bool
    frozen_messages: int = Field(description="A query hold: the messages matched when placed.")
    released_at: datetime | None
    released_by: str | None
    release_reason: str | None
    released_record_id: str | None

    @classmethod
    def of(cls, h: Hold) -> HoldOut:
        return cls(
            id=h.id,
            kind=h.kind,
            thread_id=h.thread_id,
            address=h.address,
            query=query_out(h.query),
            reason=h.reason,
            placed_by=h.placed_by,
            placed_at=h.placed_at,
            placed_record_id=h.placed_record_id,
            active=h.active,
            frozen_messages=h.frozen_count,
            released_at=h.released_at,
            released_by=h.released_by,
            release_reason=h.release_reason,
            released_record_id=h.released_record_id,
        )


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = IdField
    hold_id: str | None = IdField
    query: QueryBody | None = None


class ExportOut(BaseModel):
    id: str
    kind: str
    thread_id: str | None
    hold_id: str | None
    query: dict[str, Any] | None
    created_by: str
    created_at: datetime
    message_count: int
    pending_evidence: int = Field(
        description="Messages whose Archived record was not sealed yet: no evidence file."
    )
    size: int
    sha256: str = Field(description="SHA-256 of the ZIP file.")
    manifest_sha256: str = Field(description="SHA-256 of its manifest.json (in the report).")
    record_id: str = Field(description="The ExportCreated evidence record.")
    removed_at: datetime | None = Field(
        None, description="When its ZIP was removed (30 days after it was made): export again."
    )

    @classmethod
    def of(cls, e: Export) -> ExportOut:
        return cls(
            id=e.id,
            kind=e.kind,
            thread_id=e.thread_id,
            hold_id=e.hold_id,
            query=query_out(e.query),
            created_by=e.created_by,
            created_at=e.created_at,
            message_count=e.message_count,
            pending_evidence=e.pending_evidence,
            size=e.size,
            sha256=e.sha256,
            manifest_sha256=e.manifest_sha256,
            record_id=e.record_id,
            removed_at=e.removed_at,
        )
