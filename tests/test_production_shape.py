"""Sealpost in its production shape takes 500 certified emails, each step exactly once.

Separate ``smtp``, ``worker``, ``dispatcher`` and two ``api`` processes over the real
PostgreSQL, RabbitMQ and an S3 API server (moto in server mode: ``SEALPOST_BLOB_URL=s3://...``,
every certificate an object of the bucket), take 250 messages by SMTP submission and 250 by the
REST API through both API processes; a real SMTP peer receives the deliveries and a consumer
on the tenant's queue the events (tests/support/production_shape.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from tests.support import production_shape
from tests.support.amqp import Topology, amqp, rabbitmq_available
from tests.support.s3 import S3Server

__all__ = ["amqp", "rabbitmq_available"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.postgres
def test_500_certified_emails_through_every_role_each_step_once(
    postgres_schema_url: str,
    amqp: Topology,
    tmp_path: Path,
    keys_dir: Path,
    root: x509.Certificate,
    s3_server: S3Server,
) -> None:
    bucket = s3_server.new_bucket()
    outcome = production_shape.run(
        tmp_path,
        keys_dir,
        postgres_schema_url,
        amqp,
        [root],
        smtp_messages=250,
        api_messages=250,
        blob_env=s3_server.blob_env(bucket, "sealpost"),  # one bucket, as in production
    )
    print("\n" + outcome.report())
    outcome.check()
    stored = s3_server.keys(bucket, "sealpost/blobs/")
    assert len(stored) >= 500, len(stored)  # each certificate (and nothing on local disk)
    assert not list((tmp_path).rglob("blobs/??/??/*")), "a blob written to the local disk"
