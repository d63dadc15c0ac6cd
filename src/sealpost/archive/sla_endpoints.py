"""The unanswered-mail alerts API (``/v1/archive/sla-policies``, a thread's SLA, the overdue
threads) and the scheduled sends API (``/v1/archive/scheduled-sends``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from sealpost.api import cursors
from sealpost.api.cursors import Cursor
from sealpost.api.errors import problem_responses
from sealpost.archive.holds import actor
from sealpost.archive.scheduled import ScheduledSendService, SenderNotAllowed
from sealpost.archive.sla import SlaService
from sealpost.archive.sla_schemas import (
    CancelBody,
    ScheduledPage,
    ScheduledSendBody,
    ScheduledSendOut,
    SlaPolicyBody,
    SlaPolicyOut,
    ThreadSlaOut,
)
from sealpost.archive.viewers import Id, ViewerDep, archive_router, require
from sealpost.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)

router = archive_router()


@dataclass(frozen=True)
class SlaParts:
    """What these endpoints use; built by the composition root (``app.state.archive_sla``)."""

    sla: SlaService
    scheduled: ScheduledSendService


async def sla_parts(request: Request) -> SlaParts:
    parts: SlaParts = request.app.state.archive_sla
    return parts


PartsDep = Annotated[SlaParts, Depends(sla_parts)]


@router.post(
    "/sla-policies",
    status_code=201,
    response_model=SlaPolicyOut,
    responses=problem_responses(InvalidInput, Conflict),
)
def create_policy(body: SlaPolicyBody, parts: PartsDep, viewer: ViewerDep) -> SlaPolicyOut:
    """The tenant's default policy (no ``team_id``) or a team's own: reply targets in
    business minutes of the service hours, warning, escalation and reassignment thresholds."""
    require(viewer, "admin", "supervisor")
    return SlaPolicyOut.of(
        parts.sla.create_policy(viewer.tenant_id, body.model_dump(), changed_by=actor(viewer))
    )


@router.get("/sla-policies", response_model=list[SlaPolicyOut])
def list_policies(parts: PartsDep, viewer: ViewerDep) -> list[SlaPolicyOut]:
    return [SlaPolicyOut.of(p) for p in parts.sla.repo.policies(viewer.tenant_id)]


@router.get(
    "/sla-policies/{policy_id}", response_model=SlaPolicyOut, responses=problem_responses(NotFound)
)
def get_policy(policy_id: Id, parts: PartsDep, viewer: ViewerDep) -> SlaPolicyOut:
    return SlaPolicyOut.of(parts.sla.policy(viewer.tenant_id, policy_id))


@router.put(
    "/sla-policies/{policy_id}",
    response_model=SlaPolicyOut,
    responses=problem_responses(NotFound, InvalidInput, Conflict),
)
def replace_policy(
    policy_id: Id, body: SlaPolicyBody, parts: PartsDep, viewer: ViewerDep
) -> SlaPolicyOut:
    """Replace a policy; running clocks follow the new one from the next round."""
    require(viewer, "admin", "supervisor")
    return SlaPolicyOut.of(
        parts.sla.replace_policy(
            viewer.tenant_id, policy_id, body.model_dump(), changed_by=actor(viewer)
        )
    )


@router.delete("/sla-policies/{policy_id}", status_code=204, responses=problem_responses(NotFound))
def delete_policy(policy_id: Id, parts: PartsDep, viewer: ViewerDep) -> None:
    """Stop a policy's clocks (a SlaPolicyChanged record; the alerts raised stay, with their
    records; a policy created again for the scope counts from the scope's first policy)."""
    require(viewer, "admin", "supervisor")
    parts.sla.delete_policy(viewer.tenant_id, policy_id, changed_by=actor(viewer))


@router.get(
    "/threads/{thread_id}/sla", response_model=ThreadSlaOut, responses=problem_responses(NotFound)
)
def thread_sla(thread_id: Id, parts: PartsDep, viewer: ViewerDep) -> ThreadSlaOut:
    """The thread's reply clock now: paused while it waits on the customer; else when the
    warning, the deadline and the escalation fall, and the alerts raised so far."""
    return ThreadSlaOut(**parts.sla.thread_state(viewer, thread_id))


@router.get("/sla/breaching", response_model=list[ThreadSlaOut])
def breaching(parts: PartsDep, viewer: ViewerDep) -> list[ThreadSlaOut]:
    """The overdue threads (breached or escalated), longest overdue first: the supervisors'
    view."""
    require(viewer, "admin", "supervisor", "auditor")
    return [ThreadSlaOut(**s) for s in parts.sla.breaching(viewer)]


# -- scheduled sends ---------------------------------------------------------------------------


def scheduled_service(request: Request) -> ScheduledSendService:
    service: ScheduledSendService = request.app.state.archive_sla.scheduled
    return service


ScheduledDep = Annotated[ScheduledSendService, Depends(scheduled_service)]


@router.post(
    "/scheduled-sends",
    status_code=201,
    response_model=ScheduledSendOut,
    responses=problem_responses(InvalidInput, SenderNotAllowed),
)
def schedule(body: ScheduledSendBody, service: ScheduledDep, viewer: ViewerDep) -> ScheduledSendOut:
    """A message (certified by default, plain, or by registered pickup) to send at
    ``send_at``, or held until the recipient's working hours (a SendScheduled record).  The
    sequences' scheduler sends it; the message then has the evidence of any communication."""
    data = body.model_dump()
    data["hold_until_working_hours"] = (
        body.hold_until_working_hours.model_dump() if body.hold_until_working_hours else None
    )
    return ScheduledSendOut.of(service.create(viewer, data))


@router.get("/scheduled-sends", response_model=ScheduledPage)
def list_scheduled(
    service: ScheduledDep,
    viewer: ViewerDep,
    state: Annotated[str | None, Query(pattern="^(scheduled|sent|cancelled|failed)$")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ScheduledPage:
    """Scheduled sends the key may see (an agent: its own), newest first."""
    found = service.page(
        viewer, state=state, after=cursors.decode(cursor) if cursor else None, limit=limit + 1
    )
    items = found[:limit]
    more = len(found) > limit
    return ScheduledPage(
        items=[ScheduledSendOut.of(s) for s in items],
        next_cursor=cursors.encode(items[-1].created_at, items[-1].id) if more else None,
    )


@router.get(
    "/scheduled-sends/{send_id}",
    response_model=ScheduledSendOut,
    responses=problem_responses(NotFound),
)
def get_scheduled(send_id: Id, service: ScheduledDep, viewer: ViewerDep) -> ScheduledSendOut:
    return ScheduledSendOut.of(service.get(viewer, send_id))


@router.post(
    "/scheduled-sends/{send_id}/cancel",
    response_model=ScheduledSendOut,
    responses=problem_responses(NotFound, Conflict),
)
def cancel_scheduled(
    send_id: Id, service: ScheduledDep, viewer: ViewerDep, body: CancelBody | None = None
) -> ScheduledSendOut:
    """Withdraw it (a ScheduledSendCancelled record); 409 once it was sent.  A cancel and the
    send serialise on the send's row: it never goes out after a cancel has answered 200."""
    return ScheduledSendOut.of(service.cancel(viewer, send_id, body.reason if body else None))
