"""Sealpost in its production shape takes 500 certified emails, each step exactly once.

Separate ``smtp``, ``worker``, ``dispatcher`` and two ``api`` processes over the real
PostgreSQL and RabbitMQ, and one blob store (a shared data directory today; ``BLOB_ENV`` is
where ``SEALPOST_BLOB_URL=s3://...`` goes), take 250 messages by SMTP submission and 250 by the
REST API through both API processes; a real SMTP peer receives the deliveries and a consumer
on the tenant's queue the events (tests/support/production_shape.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from tests.support import production_shape
from tests.support.amqp import Topology, amqp, rabbitmq_available

__all__ = ["amqp", "rabbitmq_available"]

BLOB_ENV: dict[str, str] = {}
"""The blob store's settings for every process (empty: the shared data directory)."""


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.postgres
def test_500_certified_emails_through_every_role_each_step_once(
    postgres_schema_url: str,
    amqp: Topology,
    tmp_path: Path,
    keys_dir: Path,
    root: x509.Certificate,
) -> None:
    outcome = production_shape.run(
        tmp_path,
        keys_dir,
        postgres_schema_url,
        amqp,
        [root],
        smtp_messages=250,
        api_messages=250,
        blob_env=BLOB_ENV,
    )
    print("\n" + outcome.report())
    outcome.check()
