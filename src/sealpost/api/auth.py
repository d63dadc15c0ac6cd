"""API-key authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Every failure is the same 401 with the same words: a caller learns nothing about which keys
or tenants exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from sealpost.tenants.repository import Tenant, TenantRepository


def tenant_repository(request: Request) -> TenantRepository:
    """Set by the composition root (``app.state.tenants``)."""
    tenants: TenantRepository = request.app.state.tenants
    return tenants


def current_tenant(
    tenants: Annotated[TenantRepository, Depends(tenant_repository)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Tenant:
    presented = x_api_key
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
    return tenants.authenticate(presented)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
