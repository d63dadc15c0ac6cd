"""The archive's search API: ``GET /v1/archive/search`` and ``GET /v1/archive/index-health``.

A search answers only what the key may see (``repository.visible_messages``: an agent, its
own threads, its teams' and the unassigned ones), of its own tenant, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import BaseModel, Field

from sealpost.api import cursors
from sealpost.api.cursors import Cursor
from sealpost.api.errors import problem_responses
from sealpost.api.text import Moment, SingleLine
from sealpost.archive.schemas import MessageOut
from sealpost.archive.search import ArchiveSearch, SearchQuery, search_date
from sealpost.archive.viewers import ViewerDep, archive_router, require
from sealpost.errors import (
    InvalidInput,
)

router = archive_router()


@dataclass(frozen=True)
class SearchParts:
    """What the search endpoints use; built by the composition root."""

    search: ArchiveSearch
    clock: Callable[[], datetime]


async def search_parts(request: Request) -> SearchParts:
    parts: SearchParts = request.app.state.archive_search
    return parts


PartsDep = Annotated[SearchParts, Depends(search_parts)]
OptionalId = Annotated[SingleLine | None, Query(max_length=36)]


class SearchHitOut(MessageOut):
    snippet: str | None = Field(
        None, description="Words around the first match in the body (plain text), if any."
    )


class SearchPage(BaseModel):
    items: list[SearchHitOut]
    next_cursor: str | None


class IndexProblem(BaseModel):
    file: str = Field(description="The attachment's name (or the part, or `(message)`).")
    reason: str


class UnindexedOut(BaseModel):
    message: MessageOut
    problems: list[IndexProblem]


class IndexHealthOut(BaseModel):
    archived: int = Field(description="Messages archived (not purged) for the tenant.")
    indexed: int = Field(description="Indexed whole.")
    partial: int = Field(description="Indexed, but some file's text could not be read.")
    failed: int = Field(description="Only the subject and file names are indexed.")
    pending: int = Field(description="Waiting for the indexer.")
    oldest_pending_seconds: float | None = Field(
        description="How long the oldest pending message has waited."
    )
    unindexed: list[UnindexedOut] = Field(
        description="Messages whose text is not all indexed, newest first, with each file "
        "that could not be read and why."
    )
    next_cursor: str | None = Field(description="The next page of `unindexed`.")


@router.get("/search", response_model=SearchPage, responses=problem_responses(InvalidInput))
def search(
    parts: PartsDep,
    viewer: ViewerDep,
    q: Annotated[
        SingleLine,
        Query(
            min_length=1,
            max_length=500,
            description="Words to find (each a prefix from 3 letters, all required), accents "
            "and case ignored, in the subject, body, attachment names and PDF text.",
        ),
    ],
    from_: Annotated[
        SingleLine | None,
        Query(alias="from", max_length=320, description="The sender, or `@domain`."),
    ] = None,
    to: Annotated[
        SingleLine | None, Query(max_length=320, description="A recipient (To or Cc).")
    ] = None,
    after: Annotated[
        Moment | None, Query(description="Sent at or after (its Date, else archived).")
    ] = None,
    before: Annotated[Moment | None, Query(description="Sent before.")] = None,
    thread_id: OptionalId = None,
    agent_id: Annotated[
        SingleLine | None, Query(max_length=36, description="The thread's owner.")
    ] = None,
    team_id: OptionalId = None,
    has_attachment: bool | None = None,
    direction: Annotated[str | None, Query(pattern="^(inbound|outbound|internal)$")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SearchPage:
    """Archived messages the key may see whose text matches, newest first (by their Date, or
    when they were archived if they have none)."""
    for name, value in (("after", after), ("before", before)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(
                f"{name}: a date and time with its offset (e.g. 2026-12-01T00:00:00Z)"
            )
    query = SearchQuery(
        text=q,
        from_address=from_,
        to_address=to,
        after=after,
        before=before,
        thread_id=thread_id,
        agent_id=agent_id,
        team_id=team_id,
        has_attachment=has_attachment,
        direction=direction,
    )
    found = parts.search.search(
        viewer, query, after=cursors.decode(cursor) if cursor else None, limit=limit + 1
    )
    more = len(found) > limit
    items = found[:limit]
    return SearchPage(
        items=[
            SearchHitOut(**MessageOut.of(h.message).model_dump(), snippet=h.snippet) for h in items
        ],
        next_cursor=cursors.encode(search_date(items[-1].message), items[-1].message.id)
        if more
        else None,
    )


@router.get(
    "/index-health", response_model=IndexHealthOut, responses=problem_responses(InvalidInput)
)
def index_health(
    parts: PartsDep,
    viewer: ViewerDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IndexHealthOut:
    """Archived and indexed counts of the tenant, and the messages with files whose text
    could not be indexed (none is skipped silently)."""
    require(viewer, "admin", "supervisor", "auditor")
    health = parts.search.health(viewer.tenant_id, parts.clock())
    found = parts.search.unindexed(
        viewer, after=cursors.decode(cursor) if cursor else None, limit=limit + 1
    )
    more = len(found) > limit
    items = found[:limit]
    return IndexHealthOut(
        archived=health.archived,
        indexed=health.indexed,
        partial=health.partial,
        failed=health.failed,
        pending=health.pending,
        oldest_pending_seconds=health.oldest_pending_seconds,
        unindexed=[
            UnindexedOut(
                message=MessageOut.of(u.message),
                problems=[
                    IndexProblem(file=str(p.get("file", "")), reason=str(p.get("reason", "")))
                    for p in u.problems
                ],
            )
            for u in items
        ],
        next_cursor=(
            cursors.encode(items[-1].message.archived_at, items[-1].message.id) if more else None
        ),
    )
