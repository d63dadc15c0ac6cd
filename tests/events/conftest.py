"""Events tests run a real Sealpost (SQLite and PostgreSQL) with its SMTP listeners, a real
recipient mail server, and, where they need them, a real HTTP receiver and the real RabbitMQ."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.amqp import amqp, rabbitmq_available
from tests.support.private_rabbitmq import private_rabbitmq

__all__ = ["amqp", "private_rabbitmq", "rabbitmq_available"]

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
def client(mail_client: TestClient) -> TestClient:
    return mail_client


@pytest.fixture
def key(mail_key: dict[str, str]) -> dict[str, str]:
    return mail_key
