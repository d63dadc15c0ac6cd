"""The archive's core API (``/v1/archive``): messages, threads, agents, teams, settings and an
agent's inbox.  There is no DELETE and no PATCH of a message: the archive is write-once.

Every read is restricted to what the key's role may see (``viewers.py``); an id outside it
answers 404, like an id that does not exist.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse

from sealpost.api import cursors
from sealpost.api.cursors import Cursor
from sealpost.api.errors import problem_responses
from sealpost.api.text import SingleLine
from sealpost.archive.model import Source
from sealpost.archive.schemas import (
    AgentBody,
    AgentCreated,
    AgentOut,
    AgentPatch,
    AssignBody,
    IngestedOut,
    MessageDetailOut,
    MessageOut,
    MessagePage,
    NotificationOut,
    ReadBody,
    SettingsBody,
    SettingsOut,
    Sighting,
    TeamBody,
    TeamMembersBody,
    TeamOut,
    ThreadOut,
    ThreadPage,
)
from sealpost.archive.service import ArchiveService
from sealpost.archive.viewers import Id, ViewerDep, archive_router, require, stream_file
from sealpost.errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
)

router = archive_router()

SPOOL_IN_MEMORY = 1 << 20
"""An uploaded message is spooled to disk beyond 1 MiB (bounded memory for any size)."""


@dataclass(frozen=True)
class ArchiveParts:
    """What the archive endpoints use; built by the composition root."""

    service: ArchiveService
    journal_address: Callable[[str], str]
    """The journal address of a tenant's token (``journal+<token>@<bounce domain>``)."""


async def archive_parts(request: Request) -> ArchiveParts:
    parts: ArchiveParts = request.app.state.archive
    return parts


PartsDep = Annotated[ArchiveParts, Depends(archive_parts)]


def _page_after(cursor: str | None) -> Any:
    return cursors.decode(cursor) if cursor else None


# -- messages ----------------------------------------------------------------------------------


@router.post(
    "/messages",
    status_code=201,
    response_model=IngestedOut,
    responses=problem_responses(InvalidInput),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request, parts: PartsDep, viewer: ViewerDep) -> IngestedOut:
    """Archive one raw message (``message/rfc822``, byte-exact) sent by an integrator: an
    export of an old mailbox, a mail system without journaling.  The same bytes twice are
    archived once (``duplicate: true``)."""
    require(viewer, "admin")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            await anyio.to_thread.run_sync(spool.write, chunk)
        if size == 0:
            raise InvalidInput("the body is empty: send the raw message (message/rfc822)")
        spool.seek(0)
        ingested = await anyio.to_thread.run_sync(
            lambda: parts.service.ingest(viewer.tenant_id, spool, Source("api", None))  # type: ignore[arg-type]
        )
    finally:
        spool.close()
    return IngestedOut(duplicate=ingested.duplicate, message=MessageOut.of(ingested.message))


@router.get("/messages", response_model=MessagePage)
def list_messages(
    parts: PartsDep,
    viewer: ViewerDep,
    thread_id: Annotated[SingleLine | None, Query(max_length=36)] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MessagePage:
    """Archived messages the key may see, newest first."""
    found = parts.service.repo.messages(
        viewer, thread_id=thread_id, after=_page_after(cursor), limit=limit + 1
    )
    more = len(found) > limit
    items = found[:limit]
    return MessagePage(
        items=[MessageOut.of(m) for m in items],
        next_cursor=cursors.encode(items[-1].archived_at, items[-1].id) if more else None,
    )


@router.get(
    "/messages/{message_id}",
    response_model=MessageDetailOut,
    responses=problem_responses(NotFound),
)
def get_message(message_id: Id, parts: PartsDep, viewer: ViewerDep) -> MessageDetailOut:
    message = parts.service.message(viewer, message_id)
    return MessageDetailOut(
        **MessageOut.of(message).model_dump(),
        sightings=[Sighting(**s) for s in parts.service.repo.sightings(message.id)],
    )


@router.get(
    "/messages/{message_id}/raw",
    responses={
        200: {"content": {"message/rfc822": {}}, "description": "The exact bytes archived."},
        **problem_responses(NotFound, Gone),
    },
)
def get_raw(message_id: Id, parts: PartsDep, viewer: ViewerDep) -> StreamingResponse:
    """The message exactly as archived (streamed; its SHA-256 is the record's)."""
    message, stream = parts.service.raw(viewer, message_id)
    return stream_file(
        stream,
        "message/rfc822",
        {
            "Content-Disposition": f'attachment; filename="{message.id}.eml"',
            "Content-Length": str(message.size),
            "Repr-Digest": f"sha-256=:{_b64(message.sha256)}:",
        },
    )


def _b64(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


# -- threads -----------------------------------------------------------------------------------


@router.get("/threads", response_model=ThreadPage)
def list_threads(
    parts: PartsDep,
    viewer: ViewerDep,
    owner: Annotated[
        SingleLine | None,
        Query(max_length=36, description="An agent id, or `me` (an agent's key)."),
    ] = None,
    unassigned: bool = False,
    waiting_on: Annotated[str | None, Query(pattern="^(us|customer)$")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ThreadPage:
    """Threads the key may see, most recent activity first."""
    if owner == "me":
        if viewer.agent is None:
            raise InvalidInput("owner=me needs an agent's key")
        owner = viewer.agent.id
    found = parts.service.repo.threads(
        viewer,
        owner_agent_id=owner,
        unassigned=unassigned,
        waiting_on=waiting_on,
        after=_page_after(cursor),
        limit=limit + 1,
    )
    more = len(found) > limit
    items = found[:limit]
    return ThreadPage(
        items=[ThreadOut.of(th) for th in items],
        next_cursor=cursors.encode(items[-1].last_message_at, items[-1].id) if more else None,
    )


@router.get("/threads/{thread_id}", response_model=ThreadOut, responses=problem_responses(NotFound))
def get_thread(thread_id: Id, parts: PartsDep, viewer: ViewerDep) -> ThreadOut:
    found = parts.service.repo.thread(viewer, thread_id)
    if found is None:
        raise NotFound(f"no thread {thread_id}")
    return ThreadOut.of(found)


@router.post(
    "/threads/{thread_id}/assign",
    response_model=ThreadOut,
    responses=problem_responses(NotFound, InvalidInput, Conflict),
)
def assign(thread_id: Id, body: AssignBody, parts: PartsDep, viewer: ViewerDep) -> ThreadOut:
    """Give the thread to an agent or a team (a ThreadAssigned record; the new owner is
    notified).  Administrators and supervisors assign any thread; an agent may take an
    unassigned one for itself."""
    if parts.service.repo.thread(viewer, thread_id) is None:
        raise NotFound(f"no thread {thread_id}")
    return ThreadOut.of(
        parts.service.assign(
            viewer, thread_id, agent_id=body.agent_id, team_id=body.team_id, reason=body.reason
        )
    )


# -- the agent's inbox -------------------------------------------------------------------------


@router.get("/inbox", response_model=list[NotificationOut])
def inbox(
    parts: PartsDep,
    viewer: ViewerDep,
    unread: bool = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    """The agent's notifications: customers writing again in its threads, threads assigned
    to it, unanswered-mail alerts."""
    if viewer.agent is None:
        raise InvalidInput("the inbox is an agent's: use an agent's key")
    rows = parts.service.repo.notifications(viewer, unread_only=unread, limit=limit)
    return [NotificationOut(**r) for r in rows]


@router.post("/inbox/read", responses=problem_responses(InvalidInput))
def mark_read(body: ReadBody, parts: PartsDep, viewer: ViewerDep) -> dict[str, int]:
    if viewer.agent is None:
        raise InvalidInput("the inbox is an agent's: use an agent's key")
    done = parts.service.repo.mark_read(
        viewer.tenant_id, viewer.agent.id, body.ids, parts.service.clock()
    )
    return {"marked": done}


# -- agents, teams, settings (the administrator's) ---------------------------------------------


@router.post(
    "/agents",
    status_code=201,
    response_model=AgentCreated,
    responses=problem_responses(InvalidInput, Conflict),
)
def create_agent(body: AgentBody, parts: PartsDep, viewer: ViewerDep) -> AgentCreated:
    """A new agent with its own API key (shown once): the key opens /v1/archive only."""
    require(viewer, "admin")
    agent, key = parts.service.create_agent(
        viewer.tenant_id, email=body.email, name=body.name, role=body.role
    )
    return AgentCreated(**AgentOut.of(agent).model_dump(), api_key=key.secret)


@router.get("/agents", response_model=list[AgentOut])
def list_agents(parts: PartsDep, viewer: ViewerDep) -> list[AgentOut]:
    require(viewer, "admin", "supervisor", "auditor")
    return [AgentOut.of(a) for a in parts.service.repo.agents(viewer.tenant_id)]


@router.patch(
    "/agents/{agent_id}",
    response_model=AgentCreated,
    responses=problem_responses(NotFound, InvalidInput, Conflict),
)
def update_agent(
    agent_id: Id, body: AgentPatch, parts: PartsDep, viewer: ViewerDep
) -> AgentCreated:
    """Change a role, disable (its keys are revoked at once) or re-enable an agent, or issue
    it a new key (the old ones are revoked)."""
    require(viewer, "admin")
    agent, key = parts.service.update_agent(
        viewer.tenant_id,
        agent_id,
        role=body.role,
        disabled=body.disabled,
        new_key=body.new_key,
    )
    return AgentCreated(**AgentOut.of(agent).model_dump(), api_key=key.secret if key else None)


@router.post(
    "/teams",
    status_code=201,
    response_model=TeamOut,
    responses=problem_responses(InvalidInput, Conflict),
)
def create_team(body: TeamBody, parts: PartsDep, viewer: ViewerDep) -> TeamOut:
    require(viewer, "admin")
    return TeamOut.of(parts.service.create_team(viewer.tenant_id, body.name, body.agent_ids))


@router.get("/teams", response_model=list[TeamOut])
def list_teams(parts: PartsDep, viewer: ViewerDep) -> list[TeamOut]:
    return [TeamOut.of(t) for t in parts.service.repo.teams(viewer.tenant_id)]


@router.put(
    "/teams/{team_id}/members",
    response_model=TeamOut,
    responses=problem_responses(NotFound, InvalidInput),
)
def set_members(team_id: Id, body: TeamMembersBody, parts: PartsDep, viewer: ViewerDep) -> TeamOut:
    require(viewer, "admin")
    return TeamOut.of(parts.service.set_team_members(viewer.tenant_id, team_id, body.agent_ids))


@router.get("/settings", response_model=SettingsOut)
def get_settings(parts: PartsDep, viewer: ViewerDep) -> SettingsOut:
    require(viewer, "admin", "supervisor", "auditor")
    return _settings_out(parts, parts.service.settings(viewer.tenant_id))


@router.patch("/settings", response_model=SettingsOut, responses=problem_responses(InvalidInput))
def patch_settings(body: SettingsBody, parts: PartsDep, viewer: ViewerDep) -> SettingsOut:
    """Retention (days after archiving; null keeps forever), the company's own domains
    (which tell inbound from outbound mail; the tenant's sending domains count already), and
    the journal token's rotation (the address is its only secret)."""
    require(viewer, "admin")
    sent = body.model_fields_set
    row = parts.service.update_settings(
        viewer.tenant_id,
        retention_days=body.retention_days,
        clear_retention="retention_days" in sent and body.retention_days is None,
        own_domains=body.own_domains,
        rotate_journal_token=body.rotate_journal_token,
        changed_by="admin",
    )
    return _settings_out(parts, row)


def _settings_out(parts: ArchiveParts, row: Any) -> SettingsOut:
    return SettingsOut(
        journal_address=parts.journal_address(row.journal_token),
        retention_days=row.retention_days,
        own_domains=json.loads(row.own_domains),
    )
