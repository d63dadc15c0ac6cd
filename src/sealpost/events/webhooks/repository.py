"""All SQL of webhook endpoints: a tenant's receivers, their filters and signing secrets.

Deliveries and their attempts are ``events.webhooks.deliveries``; an endpoint's backlog changes
with it, in its transaction (``events.webhooks.fanout``).  The current secret signs every
request; after a rotation the previous one signs alongside it until ``previous_secret_until``,
so a receiver can switch at leisure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from sealpost.db.engine import write_transaction
from sealpost.errors import NotFound
from sealpost.events.tables import webhook_endpoints
from sealpost.events.webhooks import fanout
from sealpost.events.webhooks.deliveries import secrets_of
from sealpost.events.webhooks.headers import SigningSecrets
from sealpost.ledger.repository import as_utc


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant_id: str
    url: str
    description: str
    event_types: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_until: datetime | None
    created_at: datetime
    updated_at: datetime


def _endpoint(row: Any) -> Endpoint:
    def t(value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    return Endpoint(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        description=row.description,
        event_types=tuple(json.loads(row.event_types)),
        enabled=bool(row.enabled),
        disabled_reason=row.disabled_reason,
        disabled_at=t(row.disabled_at),
        failing_since=t(row.failing_since),
        last_success_at=t(row.last_success_at),
        previous_secret_until=t(row.previous_secret_until),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class WebhookRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        tenant_id: str,
        *,
        url: str,
        description: str,
        event_types: Sequence[str],
        secret: str,
        enabled: bool = True,
    ) -> Endpoint:
        now = datetime.now(UTC)
        endpoint_id = str(uuid.uuid4())
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(webhook_endpoints).values(
                    id=endpoint_id,
                    tenant_id=tenant_id,
                    url=url,
                    description=description,
                    event_types=json.dumps(list(event_types)),
                    secret=secret,
                    enabled=int(enabled),
                    disabled_at=None if enabled else now,
                    disabled_reason=None if enabled else "created disabled",
                    created_at=now,
                    updated_at=now,
                )
            )
        return self.get(tenant_id, endpoint_id)

    def get(self, tenant_id: str, endpoint_id: str) -> Endpoint:
        e = webhook_endpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(webhook_endpoints).where(e.id == endpoint_id, e.tenant_id == tenant_id)
            ).first()
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return _endpoint(row)

    def endpoints(self, tenant_id: str) -> list[Endpoint]:
        e = webhook_endpoints.c
        query = select(webhook_endpoints).where(e.tenant_id == tenant_id).order_by(e.created_at)
        with self.engine.connect() as conn:
            return [_endpoint(r) for r in conn.execute(query)]

    def update(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        enabled: bool | None = None,
        retry_window: timedelta,
    ) -> Endpoint:
        """Change an endpoint; enabling it again restarts its paused backlog's retry window."""
        current = self.get(tenant_id, endpoint_id)
        now = datetime.now(UTC)
        values: dict[str, Any] = {"updated_at": now}
        if url is not None:
            values["url"] = url
        if description is not None:
            values["description"] = description
        if event_types is not None:
            values["event_types"] = json.dumps(list(event_types))
        with write_transaction(self.engine) as conn:
            if enabled is True and not current.enabled:
                values.update(enabled=1, disabled_at=None, disabled_reason=None, failing_since=None)
                fanout.resume_in(conn, endpoint_id, now=now, retry_window=retry_window)
            elif enabled is False and current.enabled:
                values.update(enabled=0, disabled_at=now, disabled_reason="disabled by the API")
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id)
                .values(**values)
            )
        return self.get(tenant_id, endpoint_id)

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        """The endpoint, its backlog and its log: nothing more is sent to it."""
        self.get(tenant_id, endpoint_id)
        with write_transaction(self.engine) as conn:
            fanout.purge_in(conn, endpoint_id)
            conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    def rotate_secret(
        self, tenant_id: str, endpoint_id: str, new_secret: str, previous_valid_for: timedelta
    ) -> Endpoint:
        """A new secret signs from now on; the old one signs alongside it until it expires."""
        self.get(tenant_id, endpoint_id)
        now = datetime.now(UTC)
        e = webhook_endpoints.c
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(webhook_endpoints)
                .where(e.id == endpoint_id)
                .values(
                    previous_secret=e.secret,
                    previous_secret_until=now + previous_valid_for,
                    secret=new_secret,
                    updated_at=now,
                )
            )
        return self.get(tenant_id, endpoint_id)

    def secrets(self, endpoint_id: str) -> SigningSecrets:
        e = webhook_endpoints.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(e.secret, e.previous_secret, e.previous_secret_until).where(
                    e.id == endpoint_id
                )
            ).one()
        return secrets_of(row)
