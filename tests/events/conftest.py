"""Events tests run a real Sealpost (SQLite and PostgreSQL) with its SMTP listeners, a real
recipient mail server, and, where they need them, a real HTTP receiver and the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from tests.support.amqp import amqp, rabbitmq_available
from tests.support.mail import MailEnv

__all__ = ["amqp", "rabbitmq_available"]

FAST_RETRIES: dict[str, object] = {
    "webhook_allow_private_networks": True,  # the receiver is on 127.0.0.1
    "webhook_retry_initial_seconds": 0.1,
    "webhook_retry_max_seconds": 0.4,
    "webhook_timeout_seconds": 1.0,
    "certificates_enabled": False,  # one sealed PDF per outcome is not what these tests count
}


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return dict(FAST_RETRIES)


@pytest.fixture
def client(mail_env: MailEnv) -> Iterator[TestClient]:
    with TestClient(create_app(mail_env.sp, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def key(mail_env: MailEnv) -> dict[str, str]:
    secret = mail_env.sp.tenants.issue_api_key(mail_env.tenant_id, "crm").secret
    return {"Authorization": f"Bearer {secret}"}
