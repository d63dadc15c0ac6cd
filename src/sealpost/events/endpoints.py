"""Events over REST: pull mode (``GET /v1/events?after=``), one event, and webhook replay.

Pull mode is for systems that cannot receive webhooks or consume AMQP: page through the
tenant's events in position order with the cursor the previous page gave; ``wait`` long-polls
until something arrives.  Positions are dense and only ever grow, so a cursor never skips an
event.  A cursor older than the retention purge (``SEALPOST_EVENTS_RETENTION_DAYS``) answers
410 instead of silently skipping what was purged.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.text import Choice, Matches, Moment, SingleLine
from sealpost.config import Settings
from sealpost.db.full import StorageFull
from sealpost.errors import (
    Gone,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.events.outbox import AMQP_CURSOR, PURGED_CURSOR, OutboxRepository
from sealpost.events.registry import REGISTRY, types
from sealpost.events.webhooks.deliveries import WebhookDeliveryLog
from sealpost.events.webhooks.fanout import WebhookReplay
from sealpost.events.webhooks.repository import WebhookRepository

EventId = Annotated[uuid.UUID, Path(alias="event_id")]
"""An event's id: a UUID, also in the route (``{event_id:uuid}``), so that no other path of
``/v1/events/`` (``replay``) is taken for one: a 405 there names POST only."""

router = APIRouter(
    prefix="/v1",
    tags=["events"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)


@dataclass(frozen=True)
class EventsParts:
    """What the events and webhook endpoints use; built by the composition root."""

    outbox: OutboxRepository
    webhooks: WebhookRepository
    webhook_log: WebhookDeliveryLog
    webhook_replay: WebhookReplay
    settings: Settings
    webhooks_due: threading.Event
    """Set after a replay so the webhook sender wakes at once."""


async def events_parts(request: Request) -> EventsParts:
    parts: EventsParts = request.app.state.events
    return parts


EventsDep = Annotated[EventsParts, Depends(events_parts)]

MAX_PAGE = 1000
MAX_REPLAY = 10_000


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(description="CloudEvents, oldest first.")
    next_cursor: str = Field(description="Pass as ?after= to get what follows.")


class EventDetail(BaseModel):
    event: dict[str, Any]
    position: int | None
    published_to_amqp: bool | None = Field(
        description="Confirmed by RabbitMQ; null when no broker is configured."
    )
    webhook_deliveries: list[dict[str, Any]]


EventType = Annotated[str, Choice(types)]
"""A known event type (``GET /v1/events?type=``, a replay's ``types``)."""


class ReplayRequest(BaseModel):
    event_ids: list[Annotated[SingleLine, Field(max_length=100)]] = Field(
        default_factory=list, max_length=MAX_REPLAY
    )
    from_: Moment | None = Field(None, alias="from", description="Event time, inclusive.")
    to: Moment | None = Field(None, description="Event time, exclusive; default now.")
    types: list[EventType] = Field(default_factory=list, max_length=100)
    endpoint_id: SingleLine | None = Field(
        None,
        max_length=100,
        description="Only this endpoint (whatever its filter); default every endpoint of the "
        "tenant whose filter matches.",
    )

    model_config = {"populate_by_name": True}


class ReplayResult(BaseModel):
    events: int
    deliveries: int


def _position(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput("cursor is not one this API gave")
    return int(cursor)


def _types(types: list[str] | None) -> list[str]:
    unknown = [t for t in types or [] if REGISTRY.kind(t) is None]
    if unknown:
        raise InvalidInput(f"unknown event types {unknown}")
    return list(types or [])


@router.get("/events", response_model=EventPage, responses=problem_responses(Gone))
async def list_events(
    parts: EventsDep,
    tenant: TenantDep,
    after: Annotated[
        Annotated[str, Matches(r"^[0-9]{0,18}$", "must be a next_cursor this API gave")] | None,
        Query(description="The next_cursor of the previous page; empty: the first."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    type: Annotated[
        list[EventType] | None, Query(description="Event types; repeatable; none: all.")
    ] = None,
    wait: Annotated[float, Query(ge=0, le=30, description="Long-poll up to N s.")] = 0,
) -> EventPage:
    """The tenant's events after the cursor, oldest first (pull mode)."""
    position = _position(after)
    types = _types(type)
    if position:
        purged = await run_in_threadpool(parts.outbox.cursor, PURGED_CURSOR)
        if position < purged:
            raise Gone(
                f"events up to position {purged} were purged (kept "
                f"{parts.settings.events_retention_days} days): this cursor may have missed some; "
                "start again without 'after' and reconcile with GET /v1/communications"
            )
    deadline = time.monotonic() + wait
    while True:
        found = await run_in_threadpool(
            parts.outbox.page,
            tenant.id,
            after=position,
            limit=limit,
            types=types,
        )
        if found or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    last = found[-1].position if found else position
    return EventPage(events=[e.cloudevent() for e in found], next_cursor=str(last))


@router.get("/events/{event_id:uuid}", response_model=EventDetail)
def get_event(event_uuid: EventId, parts: EventsDep, tenant: TenantDep) -> EventDetail:
    """One event, whether RabbitMQ confirmed it, and its webhook deliveries."""
    event_id = str(event_uuid)
    found = parts.outbox.get(tenant.id, event_id)
    if found is None:
        raise NotFound(f"no event {event_id}")
    published = None
    if parts.settings.amqp_url:
        cursor = parts.outbox.cursor(AMQP_CURSOR)
        published = found.position is not None and found.position <= cursor
    deliveries = [
        {"endpoint_id": endpoint, "state": state, "attempts": attempts}
        for endpoint, state, attempts in parts.webhook_log.delivery_states(event_id)
    ]
    return EventDetail(
        event=found.cloudevent(),
        position=found.position,
        published_to_amqp=published,
        webhook_deliveries=deliveries,
    )


@router.post(
    "/events/replay",
    status_code=202,
    response_model=ReplayResult,
    responses=problem_responses(NotFound),
)
def replay(body: ReplayRequest, parts: EventsDep, tenant: TenantDep) -> ReplayResult:
    """Send events again to webhooks: by id, or every event in a time range.  Each replayed
    delivery keeps its event's ``webhook-id``, so receivers deduplicating on it stay correct."""
    if not body.event_ids and body.from_ is None:
        raise InvalidInput("give event_ids, or a time range with from (and to)")
    if body.endpoint_id is not None:
        parts.webhooks.get(tenant.id, body.endpoint_id)
    events = parts.outbox.positioned(
        tenant.id,
        event_ids=body.event_ids,
        time_from=body.from_.astimezone(UTC) if body.from_ else None,
        time_to=body.to.astimezone(UTC) if body.to else None,
        types=_types(body.types),
        limit=MAX_REPLAY + 1,
    )
    if len(events) > MAX_REPLAY:
        raise InvalidInput(f"more than {MAX_REPLAY} events match: narrow the range")
    deliveries = parts.webhook_replay.replay(
        events,
        endpoint_id=body.endpoint_id,
        retry_window=timedelta(seconds=parts.settings.webhook_retry_window_seconds),
    )
    parts.webhooks_due.set()
    return ReplayResult(events=len(events), deliveries=deliveries)
