"""API-key authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Every failure is the same 401 with the same words: a caller learns nothing about which keys
or tenants exist.  A request with a body is authenticated by the request guard
(``api/limits.py``) before its body is read, with :func:`admit`; the endpoint's dependency
then finds that tenant in the request's state instead of checking the key again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from sealpost.errors import RateLimited
from sealpost.ratelimit import RateLimiter, retry_after
from sealpost.tenants.repository import Tenant, TenantRepository

ADMITTED = "sealpost_tenant"
"""Key of the request state under which the guard leaves the tenant it admitted."""


def tenant_repository(request: Request) -> TenantRepository:
    """Set by the composition root (``app.state.tenants``)."""
    tenants: TenantRepository = request.app.state.tenants
    return tenants


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: a Bearer credential, else ``X-API-Key``."""
    presented = x_api_key
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
    return presented


def admit(tenants: TenantRepository, limiter: RateLimiter | None, presented: str | None) -> Tenant:
    """The tenant owning ``presented``, if it is within its rate (RateLimited otherwise).
    Blocking (a database read): call it from a thread."""
    tenant = tenants.authenticate(presented)
    if limiter is not None and (wait := limiter.take(tenant.id)):
        raise RateLimited(
            f"this tenant is over its API rate ({limiter.rate}): retry later",
            retry_after=retry_after(wait),
        )
    return tenant


def current_tenant(
    request: Request,
    tenants: Annotated[TenantRepository, Depends(tenant_repository)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Tenant:
    admitted = request.scope.get("state", {}).get(ADMITTED)
    if isinstance(admitted, Tenant):
        return admitted
    limiter: RateLimiter | None = getattr(request.app.state, "tenant_rate_limiter", None)
    return admit(tenants, limiter, presented_key(authorization, x_api_key))


TenantDep = Annotated[Tenant, Depends(current_tenant)]
