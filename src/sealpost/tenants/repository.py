"""Tenants and their API keys.

An API key is ``sp_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the whole key
is compared in constant time.  Keys are 256-bit random, so a fast hash is the right tool (a
password hash would only slow every request); only the hash is stored, the key is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.db.engine import reading
from sealpost.errors import Conflict, InvalidInput, NotFound, Unauthorized
from sealpost.tenants.tables import api_keys, tenants

KEY_PREFIX = "sp"


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    agent_id: str | None = None
    """Set when the key presented is an archive agent's (issue 15): such a key opens the
    archive with the agent's role, and nothing else (``api.auth.current_tenant`` refuses it)."""


@dataclass(frozen=True)
class IssuedApiKey:
    """A freshly created key: ``secret`` is the only copy that will ever exist."""

    id: str
    tenant_id: str
    secret: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class TenantRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str) -> Tenant:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("a tenant name is 1 to 200 characters")
        tenant = Tenant(str(uuid.uuid4()), name)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(tenants).values(id=tenant.id, name=name, created_at=datetime.now(UTC))
                )
        except IntegrityError:
            raise Conflict(f"a tenant named {name!r} already exists") from None
        return tenant

    def get(self, tenant_ref: str) -> Tenant:
        """A tenant by id or by name."""
        query = select(tenants.c.id, tenants.c.name).where(
            (tenants.c.id == tenant_ref) | (tenants.c.name == tenant_ref)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no tenant {tenant_ref!r}")
        return Tenant(row.id, row.name)

    def list(self) -> list[Tenant]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenants.c.id, tenants.c.name).order_by(tenants.c.name))
            return [Tenant(r.id, r.name) for r in rows]

    def issue_api_key(self, tenant_id: str, label: str = "") -> IssuedApiKey:
        with self.engine.begin() as conn:
            return self.issue_api_key_in(conn, tenant_id, label)

    @staticmethod
    def issue_api_key_in(
        conn: Connection, tenant_id: str, label: str = "", *, agent_id: str | None = None
    ) -> IssuedApiKey:
        """A new key in the caller's transaction (an archive agent's key is created with the
        agent, in one commit)."""
        prefix = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        key_id = str(uuid.uuid4())
        conn.execute(
            insert(api_keys).values(
                id=key_id,
                tenant_id=tenant_id,
                prefix=prefix,
                secret_sha256=_digest(secret),
                label=label,
                created_at=datetime.now(UTC),
                agent_id=agent_id,
            )
        )
        return IssuedApiKey(key_id, tenant_id, secret)

    @staticmethod
    def revoke_agent_keys_in(conn: Connection, tenant_id: str, agent_id: str) -> int:
        """Revoke every active key of an archive agent (the agent was disabled)."""
        return conn.execute(
            update(api_keys)
            .where(
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.agent_id == agent_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=datetime.now(UTC))
        ).rowcount

    def revoke_api_key(self, key_id: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        if not done:
            raise NotFound(f"no active API key {key_id}")

    def authenticate(self, presented: str | None) -> Tenant:
        """The tenant owning ``presented``; Unauthorized with the same words for every failure."""
        failure = Unauthorized("missing or invalid API key")
        if not presented:
            raise failure
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            raise failure
        query = (
            select(api_keys.c.secret_sha256, api_keys.c.agent_id, tenants.c.id, tenants.c.name)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.prefix == parts[1], api_keys.c.revoked_at.is_(None))
        )
        with reading(self.engine) as conn:
            row = conn.execute(query).first()
        expected = bytes(row.secret_sha256) if row is not None else b"\0" * 32
        if not hmac.compare_digest(expected, _digest(presented)) or row is None:
            raise failure
        return Tenant(row.id, row.name, row.agent_id)
