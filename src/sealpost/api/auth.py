"""API-key authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Every failure is the same 401 with the same words: a caller learns nothing about which keys
or tenants exist.  A request with a body is authenticated by the request guard
(``api/limits.py``) before its body is read, with :func:`admit`; the endpoint's dependency
then finds that tenant in the request's state instead of checking the key again.  Both ways
of presenting a key are declared as OpenAPI security schemes (RFC 6750 bearer, an API key
header), so that the document says what a request needs and Swagger UI can send it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sealpost.errors import Forbidden, RateLimited
from sealpost.ratelimit import RateLimiter, retry_after
from sealpost.tenants.repository import Tenant, TenantRepository

ADMITTED = "sealpost_tenant"
"""Key of the request state under which the guard leaves the tenant it admitted."""

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="Authorization: Bearer <API key>"
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="The API key."
)


async def tenant_repository(request: Request) -> TenantRepository:
    """Set by the composition root (``app.state.tenants``)."""
    tenants: TenantRepository = request.app.state.tenants
    return tenants


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: a Bearer credential, else ``X-API-Key``; an
    ``Authorization`` header that is not a bearer token counts as no key (even beside an
    ``X-API-Key``)."""
    presented = x_api_key
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
    return presented


def admit(tenants: TenantRepository, limiter: RateLimiter | None, presented: str | None) -> Tenant:
    """The tenant owning ``presented``, if it is within its rate (RateLimited otherwise).
    Blocking (a database read): call it from a thread."""
    tenant = tenants.authenticate(presented)
    # an archive agent's key has its own bucket: one agent's script never throttles the
    # tenant's CRM (nor the other agents)
    bucket = tenant.id if tenant.agent_id is None else f"{tenant.id}/agent/{tenant.agent_id}"
    if limiter is not None and (wait := limiter.take(bucket)):
        raise RateLimited(
            f"this {'tenant' if tenant.agent_id is None else 'agent'} is over its API rate "
            f"({limiter.rate}): retry later",
            retry_after=retry_after(wait),
        )
    return tenant


def current_tenant(
    request: Request,
    tenants: Annotated[TenantRepository, Depends(tenant_repository)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    x_api_key: Annotated[str | None, Security(api_key_header)],
) -> Tenant:
    """The tenant the request guard admitted, else the tenant of the key presented; an
    archive agent's key is refused here (it opens ``/v1/archive`` only, with its role)."""
    tenant = any_key(request, tenants, x_api_key)
    if tenant.agent_id is not None:
        raise Forbidden("this key is an archive agent's: it opens /v1/archive only")
    return tenant


def any_key(request: Request, tenants: TenantRepository, x_api_key: str | None) -> Tenant:
    """The tenant of the key presented (admitted by the guard or checked here), an archive
    agent's key included: the archive's own dependency decides what its role may do."""
    admitted = request.scope.get("state", {}).get(ADMITTED)
    if isinstance(admitted, Tenant):
        return admitted
    limiter: RateLimiter | None = getattr(request.app.state, "tenant_rate_limiter", None)
    return admit(tenants, limiter, presented_key(request.headers.get("authorization"), x_api_key))


TenantDep = Annotated[Tenant, Depends(current_tenant)]
