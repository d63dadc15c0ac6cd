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
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

__all__ = ["amqp", "rabbitmq_available"]


def blob_env(s3: S3Server, bucket: str) -> dict[str, str]:
    """The blob store's settings for every process: one bucket, as in production."""
    return {
        "SEALPOST_BLOB_URL": f"s3://{bucket}/sealpost",
        "SEALPOST_BLOB_S3_ENDPOINT_URL": s3.endpoint_url,
        "SEALPOST_BLOB_S3_REGION": REGION,
        "SEALPOST_BLOB_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "SEALPOST_BLOB_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "SEALPOST_BLOB_S3_ADDRESSING_STYLE": "path",
    }


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
        blob_env=blob_env(s3_server, bucket),
    )
    print("\n" + outcome.report())
    outcome.check()
    stored = s3_server.keys(bucket, "sealpost/blobs/")
    assert len(stored) >= 500, len(stored)  # each certificate (and nothing on local disk)
    assert not list((tmp_path).rglob("blobs/??/??/*")), "a blob written to the local disk"
