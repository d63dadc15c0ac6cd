"""Who is asking the archive API: the tenant's administrator (a tenant API key) or one of its
agents (an agent's own key), and what that role may do.

``ViewerDep`` authenticates either key (the request guard already did for requests with a
body); every query of the archive is then restricted by the viewer (``repository.
visible_messages`` / ``visible_threads``), so an agent never reads another team's mail by
guessing an id: it gets the same 404 as for an id that does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from sealpost.api.auth import any_key, api_key_header, bearer, tenant_repository
from sealpost.api.errors import problem_responses
from sealpost.archive.model import Viewer
from sealpost.archive.service import ArchiveService
from sealpost.errors import (
    Forbidden,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sealpost.tenants.repository import TenantRepository


def archive_service(request: Request) -> ArchiveService:
    """Set by the composition root (``app.state.archive``)."""
    service: ArchiveService = request.app.state.archive.service
    return service


async def current_viewer(
    request: Request,
    tenants: Annotated[TenantRepository, Depends(tenant_repository)],
    service: Annotated[ArchiveService, Depends(archive_service)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    x_api_key: Annotated[str | None, Security(api_key_header)],
) -> Viewer:
    def resolve() -> Viewer:
        tenant = any_key(request, tenants, x_api_key)
        return service.viewer(tenant.id, tenant.agent_id)

    return await anyio.to_thread.run_sync(resolve)


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def require(viewer: Viewer, *roles: str) -> None:
    """Refuse (403) unless the viewer's role is one of ``roles`` ("admin" is the tenant key)."""
    if viewer.role not in roles:
        allowed = ", ".join(roles)
        raise Forbidden(f"this needs one of these roles: {allowed} (this key is {viewer.role})")


Id = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9-]+$")]
"""An archive object's id in a path (a UUID this API gave)."""


def archive_router(prefix: str = "/v1/archive") -> APIRouter:
    """A router of the archive API: every route answers these problems besides its own."""
    return APIRouter(
        prefix=prefix,
        tags=["archive"],
        responses=problem_responses(Unauthorized, Forbidden, TooManyRequests, ServiceUnavailable),
    )


def stream_file(stream: BinaryIO, media_type: str, headers: dict[str, str]) -> StreamingResponse:
    """A stored file sent in 64 KiB chunks (a message or an export: never whole in memory),
    closed once sent."""

    def chunks() -> Iterator[bytes]:
        with stream:
            while chunk := stream.read(1 << 16):
                yield chunk

    return StreamingResponse(chunks(), media_type=media_type, headers=headers)
