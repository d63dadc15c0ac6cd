"""API-key authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Every failure is the same 401 with the same words: a caller learns nothing about which keys
or tenants exist.  Both ways are declared as OpenAPI security schemes (RFC 6750 bearer, an
API key header), so that the document says what a request needs and Swagger UI can send it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from sealpost.tenants.repository import Tenant, TenantRepository

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="Authorization: Bearer <API key>"
)
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="The API key."
)


def tenant_repository(request: Request) -> TenantRepository:
    """Set by the composition root (``app.state.tenants``)."""
    tenants: TenantRepository = request.app.state.tenants
    return tenants


def current_tenant(
    request: Request,
    tenants: Annotated[TenantRepository, Depends(tenant_repository)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    x_api_key: Annotated[str | None, Security(api_key_header)],
) -> Tenant:
    """The tenant of the key presented; an ``Authorization`` header that is not a bearer
    token counts as no key (even beside an ``X-API-Key``)."""
    presented = x_api_key
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        presented = credential.strip() if scheme.lower() == "bearer" else None
    return tenants.authenticate(presented)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
