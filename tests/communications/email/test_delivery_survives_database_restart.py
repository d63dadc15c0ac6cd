"""Regression: a delivery in flight when the database goes away is recorded once it is back.

It used to be lost for minutes: the recipient accepted the message while PostgreSQL was
down, writing the outcome failed, and the worker forgot it.  Its lease (held by a live
process, so never freed as a dead one's) kept the message from every worker for
``SEALPOST_DELIVERY_LEASE_SECONDS`` (300 s), after which it was delivered a second time.
Now the worker keeps the outcome and writes it as soon as the database answers again: one
copy, one attempt, one RelayToNonERDS, within seconds of the restart.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from sealpost.app import build
from sealpost.communications.email.delivery import DeliveryWorker
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.config import Settings
from tests.conftest import require_service
from tests.support.delivery_load import (
    SlowRecipientHandler,
    SlowRecipientServer,
    numbered_message,
)
from tests.support.mail import RECIPIENT_DOMAIN, email_settings
from tests.support.private_postgres import private_postgres


@dataclass
class DecidingHandler(SlowRecipientHandler):
    """Says when DATA is in (the final dot received), before it thinks and answers."""

    data_in: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_in.set()
        return await super().handle_DATA(server, session, envelope)


PEER_DELAY = 3.0
"""The recipient thinks this long after the final dot: the database goes away meanwhile."""
OUTAGE_SECONDS = 4.0
RECORDED_WITHIN_SECONDS = 15.0
"""After the database is back (the worker retries every 0.25 s doubling to 5 s)."""


@pytest.mark.postgres
def test_outcome_of_a_delivery_in_flight_during_a_database_restart_is_recorded_once(
    tmp_path: Path, keys_dir: Path
) -> None:
    try:
        server_context = private_postgres()
        server = server_context.__enter__()
    except (FileNotFoundError, OSError) as exc:
        require_service("PostgreSQL server binaries", str(exc))
        pytest.skip("unreachable")  # require_service has failed or skipped already
    try:
        peer = SlowRecipientServer(delay=PEER_DELAY)
        handler = peer.handler = peer.controller.handler = DecidingHandler(delay=PEER_DELAY)
        with peer:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=tmp_path / "data",
                database_url=server.url,
                keys_dir=keys_dir,
            )
            sp = build(email_settings(settings, peer.port, delivery_lease_seconds=300.0))
            try:
                tenant = sp.tenants.create(f"restart-{uuid.uuid4().hex[:6]}")
                _, raw = numbered_message(1, to=f"bob@{RECIPIENT_DOMAIN}")
                accepted = sp.submissions.accept(
                    SubmissionRequest(
                        tenant_id=tenant.id,
                        via="api",
                        mail_from="service@acme.test",
                        recipients=(f"bob@{RECIPIENT_DOMAIN}",),
                        raw=raw,
                        identification={"method": "api-key"},
                    )
                )
                (communication_id,) = accepted.communication_ids
                worker = DeliveryWorker(
                    repository=sp.communications,
                    contents=sp.contents,
                    senders=sp.senders,
                    settings=sp.settings,
                    return_paths=sp.return_paths,
                )
                (job,) = sp.communications.claim_due(worker.owner, limit=1, lease_seconds=300)
                outcome: list[str] = []
                delivering = threading.Thread(
                    target=lambda: outcome.append(asyncio.run(worker.deliver(job))), daemon=True
                )
                delivering.start()
                assert handler.data_in.wait(30), "the delivery never reached DATA"
                server.stop()  # while the recipient decides
                time.sleep(OUTAGE_SECONDS)  # the recipient accepts meanwhile
                assert len(peer.received) == 1
                server.start()
                back = time.monotonic()
                delivering.join(RECORDED_WITHIN_SECONDS)
                assert not delivering.is_alive(), "the outcome was not recorded after the restart"
                recorded_after = time.monotonic() - back

                assert outcome == ["delivered"]
                stored = sp.communications.get(communication_id)
                assert stored is not None and stored.status == "delivered"
                assert [a["outcome"] for a in sp.communications.attempts(communication_id)] == [
                    "delivered"
                ]
                events = [e.event for e in sp.communications.timeline(tenant.id, communication_id)]
                assert events == ["SubmissionAcceptance", "RelayToNonERDS"]
                assert sp.communications.claim_due("x", limit=1, lease_seconds=1) == []
                assert len(peer.received) == 1  # delivered once: nothing left to deliver again
                print(f"\noutcome recorded {recorded_after:.1f} s after the database came back")
            finally:
                sp.stop_background()
                sp.engine.dispose()
    finally:
        server_context.__exit__(None, None, None)
