"""Legal holds and exports of the mail archive (``/v1/archive/holds``, ``/v1/archive/exports``).

Administrators, supervisors and auditors only: an agent's key gets 403.  Every hold placed or
released and every export is an evidence record (docs/archive-holds.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import StreamingResponse

from sealpost.api.errors import problem_responses
from sealpost.archive.export import ExportService
from sealpost.archive.hold_schemas import ExportBody, ExportOut, HoldBody, HoldOut, ReleaseBody
from sealpost.archive.holds import HoldService
from sealpost.archive.retention import RetentionPurger
from sealpost.archive.viewers import Id, ViewerDep, archive_router, stream_file
from sealpost.errors import (
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
)

router = archive_router()


@dataclass(frozen=True)
class HoldParts:
    """What the holds and exports endpoints use; built by the composition root."""

    holds: HoldService
    exports: ExportService
    purger: RetentionPurger


async def hold_parts(request: Request) -> HoldParts:
    parts: HoldParts = request.app.state.archive_holds
    return parts


PartsDep = Annotated[HoldParts, Depends(hold_parts)]


@router.post(
    "/holds",
    status_code=201,
    response_model=HoldOut,
    responses=problem_responses(InvalidInput, NotFound),
)
def place_hold(body: HoldBody, parts: PartsDep, viewer: ViewerDep) -> HoldOut:
    """Place a legal hold (a LegalHoldPlaced record): nothing it covers is purged while it
    is active."""
    return HoldOut.of(
        parts.holds.place(
            viewer,
            kind=body.kind,
            reason=body.reason,
            thread_id=body.thread_id,
            address=body.address,
            query=body.query.query() if body.query else None,
        )
    )


@router.get("/holds", response_model=list[HoldOut])
def list_holds(
    parts: PartsDep,
    viewer: ViewerDep,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[HoldOut]:
    """The tenant's legal holds, newest first (``active=true``: only those in force)."""
    return [HoldOut.of(h) for h in parts.holds.list_holds(viewer, active_only=active, limit=limit)]


@router.get("/holds/{hold_id}", response_model=HoldOut, responses=problem_responses(NotFound))
def get_hold(hold_id: Id, parts: PartsDep, viewer: ViewerDep) -> HoldOut:
    return HoldOut.of(parts.holds.get(viewer, hold_id))


@router.post(
    "/holds/{hold_id}/release",
    response_model=HoldOut,
    responses=problem_responses(NotFound, InvalidInput, Conflict),
)
def release_hold(hold_id: Id, body: ReleaseBody, parts: PartsDep, viewer: ViewerDep) -> HoldOut:
    """Release a legal hold (a LegalHoldReleased record); the purge may then remove what it
    kept, if its retention has passed."""
    return HoldOut.of(parts.holds.release(viewer, hold_id, body.reason))


@router.post(
    "/exports",
    status_code=201,
    response_model=ExportOut,
    responses=problem_responses(InvalidInput, NotFound, Conflict),
)
def create_export(body: ExportBody, parts: PartsDep, viewer: ViewerDep) -> ExportOut:
    """Export a thread, a hold's messages or a query's as a ZIP with a sealed
    chain-of-custody report (an ExportCreated record); ``sealpost verify`` checks it."""
    return ExportOut.of(
        parts.exports.create(
            viewer,
            thread_id=body.thread_id,
            hold_id=body.hold_id,
            query=body.query.query() if body.query else None,
        )
    )


@router.get("/exports/{export_id}", response_model=ExportOut, responses=problem_responses(NotFound))
def get_export(export_id: Id, parts: PartsDep, viewer: ViewerDep) -> ExportOut:
    return ExportOut.of(parts.exports.get(viewer, export_id))


@router.get(
    "/exports/{export_id}/download",
    responses={
        200: {"content": {"application/zip": {}}, "description": "The export's ZIP file."},
        **problem_responses(NotFound, Gone),
    },
)
def download_export(export_id: Id, parts: PartsDep, viewer: ViewerDep) -> StreamingResponse:
    found, stream = parts.exports.open(viewer, export_id)
    return stream_file(
        stream,
        "application/zip",
        {
            "Content-Disposition": f'attachment; filename="export-{found.id}.zip"',
            "Content-Length": str(found.size),
        },
    )
