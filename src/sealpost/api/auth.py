"""API-key authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Every failure is the same 401 with the same words: a caller learns nothing about which keys
or tenants exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from sealpost.app import Sealpost
from sealpost.store.tenants import Tenant


def get_sealpost(request: Request) -> Sealpost:
    sealpost: Sealpost = request.app.state.sealpost
    return sealpost


def current_tenant(
    sealpost: Annotated[Sealpost, Depends(get_sealpost)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Tenant:
    presented = x_api_key
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
    return sealpost.tenants.authenticate(presented)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
SealpostDep = Annotated[Sealpost, Depends(get_sealpost)]
