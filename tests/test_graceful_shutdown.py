"""SIGTERM to each role under load loses nothing and leaves no lease behind.

The production shape (tests/support/production_shape.py) takes certified mail by SMTP and by
the API while the ``smtp``, ``worker``, ``dispatcher`` and one ``api`` process are SIGTERMed
in turn and started again, as a rolling restart does.  Each must exit 0 within its bound, and
right after it exits no lease may still name it: the sequencer's, the events dispatcher's,
claimed deliveries and webhook deliveries are released, not left to expire.  Nothing is lost
and nothing happens twice: every accepted message delivered once, sealed once, certified
once, every event published once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from tests.support import production_shape
from tests.support.amqp import Topology, amqp, rabbitmq_available
from tests.support.production_shape import Stop

__all__ = ["amqp", "rabbitmq_available"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_to_each_role_under_load_loses_nothing_and_releases_its_leases(
    postgres_schema_url: str,
    amqp: Topology,
    tmp_path: Path,
    keys_dir: Path,
    root: x509.Certificate,
) -> None:
    stops = [
        Stop(0.15, "smtp"),
        Stop(0.35, "worker"),
        Stop(0.55, "dispatcher"),
        Stop(0.75, "api-a"),
    ]
    outcome = production_shape.run(
        tmp_path,
        keys_dir,
        postgres_schema_url,
        amqp,
        [root],
        smtp_messages=80,
        api_messages=80,
        stops=stops,
        senders=2,
    )
    print("\n" + outcome.report())
    outcome.check()
    assert all(stop.held_before or stop.process != "dispatcher" for stop in outcome.stops), (
        "the dispatcher held nothing when stopped: the lease check proved nothing"
    )
