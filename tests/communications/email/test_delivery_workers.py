"""Delivery workers sharing one database: each message once, crashes recovered, clocks kept.

Real recipient servers on 127.0.0.1, on SQLite and on the real PostgreSQL (where claims use
``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sealpost.app import Sealpost, build
from sealpost.communications.email.delivery import PROCESS_SPACE, DeliveryWorker
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.communications.repository import AttemptOutcome
from sealpost.communications.tables import communications
from sealpost.config import Settings
from sealpost.ledger.records import Reason
from tests.support.delivery_load import (
    SlowRecipientServer,
    copies_by,
    numbered_message,
    received_header,
)
from tests.support.mail import RECIPIENT_DOMAIN, email_settings
from tests.support.smtp_peer import free_port

ETSI = "http://uri.etsi.org/19522/Event/"
SEALPOST = "urn:sealpost:event:"


@dataclass
class Env:
    sp: Sealpost
    tenant_id: str
    peer: SlowRecipientServer

    def worker(self) -> DeliveryWorker:
        """One more worker of the same service (its own lease owner), like a second replica."""
        return DeliveryWorker(
            repository=self.sp.communications,
            contents=self.sp.contents,
            senders=self.sp.senders,
            settings=self.sp.settings,
            return_paths=self.sp.return_paths,
        )

    def queue(self, count: int, start: int = 0) -> dict[str, str]:
        """Submit ``count`` messages (grouped commits); communication id → Message-ID."""
        futures = []
        for n in range(start, start + count):
            _, raw = numbered_message(n, to=f"bob@{RECIPIENT_DOMAIN}")
            request = SubmissionRequest(
                tenant_id=self.tenant_id,
                via="api",
                mail_from="service@acme.test",
                recipients=(f"bob@{RECIPIENT_DOMAIN}",),
                raw=raw,
                identification={"method": "api-key"},
            )
            futures.append(self.sp.submissions.submit(request))
        queued: dict[str, str] = {}
        for future in futures:
            accepted = future.result(60)
            queued[accepted.communication_ids[0]] = accepted.message_id
        return queued

    def lease_owner(self, communication_id: str) -> str | None:
        c = communications.c
        with self.sp.engine.connect() as conn:
            owner: str | None = conn.execute(
                select(c.lease_owner).where(c.id == communication_id)
            ).scalar_one()
        return owner

    def events(self, communication_id: str) -> list[str]:
        return [e.event for e in self.sp.communications.timeline(self.tenant_id, communication_id)]


def _env(settings: Settings, port: int, delay: float, **overrides: object) -> Iterator[Env]:
    peer = SlowRecipientServer(delay=delay)
    with peer:
        sp = build(email_settings(settings, port or peer.port, **overrides))
        try:
            tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
            yield Env(sp, tenant.id, peer)
        finally:
            sp.stop_background()
            sp.engine.dispose()


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    """Sealpost (no background threads: the test drives the workers) and a slow recipient."""
    yield from _env(settings, 0, 0.005, delivery_concurrency=8)


@pytest.fixture
def unreachable_env(settings: Settings) -> Iterator[Env]:
    """Sealpost whose route to recipient.test is a closed port (connection refused)."""
    yield from _env(settings, free_port(), 0.0, delivery_retry_initial_seconds=60.0)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped (so it names no process)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run_until_idle(worker: DeliveryWorker) -> int:
    return asyncio.run(worker.run_until_idle())


# -- N workers, one database --------------------------------------------------------------------


def test_two_workers_deliver_200_messages_exactly_once(env: Env) -> None:
    queued = env.queue(200)
    workers = [env.worker(), env.worker()]
    assert workers[0].owner != workers[1].owner
    made: dict[int, int] = {}
    start = threading.Barrier(len(workers))

    def work(index: int) -> None:
        start.wait()
        made[index] = _run_until_idle(workers[index])  # its own thread, its own event loop

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)

    # the recipient got each message once: 200 messages, 200 distinct Message-IDs
    assert len(env.peer.received) == 200
    by_message_id = copies_by(env.peer.received, "Message-ID")
    assert set(by_message_id) == set(queued.values())
    assert set(by_message_id.values()) == {1}
    assert set(copies_by(env.peer.received, "X-Sealpost-Communication")) == set(queued)
    # both workers took part, and no attempt was made twice
    assert made[0] > 0 and made[1] > 0, made
    assert made[0] + made[1] == 200
    assert env.sp.communications.count_by_status(env.tenant_id) == {"delivered": 200}
    for communication_id in queued:
        communication = env.sp.communications.get(communication_id)
        assert communication is not None and communication.attempts == 1
        attempts = env.sp.communications.attempts(communication_id)
        assert [a["outcome"] for a in attempts] == ["delivered"]
        assert env.events(communication_id) == ["SubmissionAcceptance", "RelayToNonERDS"]


# -- crash recovery --------------------------------------------------------------------------


def test_work_claimed_by_a_dead_local_process_is_recovered_and_delivered(env: Env) -> None:
    queued = env.queue(5)
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:{PROCESS_SPACE}:dead"
    claimed = env.sp.communications.claim_due(dead_owner, limit=10, lease_seconds=300)
    assert {c.id for c in claimed} == set(queued)

    worker = env.worker()
    assert _run_until_idle(worker) == 0  # leased: nobody else may take them...
    assert env.peer.received == []
    assert worker.recover() == 5  # ...until the owner is known dead
    assert _run_until_idle(worker) == 5

    assert sorted(received_header(r, "Message-ID") or "" for r in env.peer.received) == sorted(
        queued.values()
    )
    for communication_id in queued:
        assert env.sp.communications.get(communication_id).status == "delivered"  # type: ignore[union-attr]
        attempts = env.sp.communications.attempts(communication_id)
        # the dead process's attempt never finished: one attempt on record, the second try
        assert [(a["number"], a["outcome"]) for a in attempts] == [(2, "delivered")]
        assert env.events(communication_id) == ["SubmissionAcceptance", "RelayToNonERDS"]


def test_leases_of_live_or_remote_owners_are_kept_until_they_expire(env: Env) -> None:
    container, remote, alive = list(env.queue(3))  # claimed in this (submission) order
    # same host name, a pid that does not exist here, but another PID namespace (a container
    # sharing the host name): its pid means nothing here, so it is not judged dead
    container_owner = f"{socket.gethostname()}:{_dead_pid()}:0000-1:feed0001"
    remote_owner = "worker-2.elsewhere.example:4242:cafe0001"
    alive_owner = f"{socket.gethostname()}:{os.getpid()}:{PROCESS_SPACE}:busy0001"
    (taken,) = env.sp.communications.claim_due(container_owner, limit=1, lease_seconds=300)
    assert taken.id == container
    (taken,) = env.sp.communications.claim_due(remote_owner, limit=1, lease_seconds=1.5)
    assert taken.id == remote
    (taken,) = env.sp.communications.claim_due(alive_owner, limit=1, lease_seconds=300)
    assert taken.id == alive
    expires = time.monotonic() + 1.5

    worker = env.worker()
    # another host's process cannot be checked from here, a live one is working: keep both
    assert worker.recover() == 0
    assert _run_until_idle(worker) == 0
    assert env.lease_owner(remote) == remote_owner
    assert env.lease_owner(alive) == alive_owner
    assert env.lease_owner(container) == container_owner

    time.sleep(max(0.0, expires - time.monotonic()) + 0.2)
    assert _run_until_idle(worker) == 1  # the remote lease expired: taken over, delivered
    assert env.sp.communications.get(remote).status == "delivered"  # type: ignore[union-attr]
    assert env.sp.communications.get(alive).status == "queued"  # type: ignore[union-attr]
    assert env.lease_owner(alive) == alive_owner
    assert [received_header(r, "X-Sealpost-Communication") for r in env.peer.received] == [remote]


def test_a_worker_whose_lease_was_taken_over_writes_nothing(env: Env) -> None:
    ((communication_id, message_id),) = env.queue(1).items()
    stalled, successor = env.worker(), env.worker()
    repository = env.sp.communications
    (first,) = repository.claim_due(stalled.owner, limit=1, lease_seconds=30)
    later = datetime.now(UTC) + timedelta(seconds=31)  # the stalled worker's lease ran out
    (second,) = repository.claim_due(successor.owner, limit=1, lease_seconds=30, now=later)
    assert second.id == communication_id and second.attempts == 2

    # the stalled worker wakes up and finishes its attempt: it reached the recipient...
    assert asyncio.run(stalled.deliver(first)) == "queued"
    assert len(env.peer.received) == 1
    # ...but its outcome is fenced off: no attempt, no evidence, the successor keeps the lease
    assert repository.attempts(communication_id) == []
    assert env.events(communication_id) == ["SubmissionAcceptance"]
    assert env.lease_owner(communication_id) == successor.owner
    assert repository.get(communication_id).status == "queued"  # type: ignore[union-attr]

    # the same fence, asked directly: False, and nothing written
    now = datetime.now(UTC)
    record = stalled._record(first, "RelayToNonERDSFailure", reasons=[Reason("x", "late")])
    outcome = AttemptOutcome(
        number=first.attempts,
        started_at=now,
        finished_at=now,
        outcome="deferred",
        reply_code=451,
        reply_text="451 4.3.0 late",
        remote_host="127.0.0.1",
        remote_ip="127.0.0.1",
        details={},
        status="queued",
        next_attempt_at=now,
    )
    kept = repository.finish_attempt(
        stalled.owner,
        first,
        outcome,
        [record],
        attempt_record_id=record.id,
        attempt_id=str(uuid.uuid4()),
    )
    assert kept is False
    assert repository.attempts(communication_id) == []
    assert env.events(communication_id) == ["SubmissionAcceptance"]

    # the successor's attempt is the one on record (SMTP has no exactly-once: the recipient
    # has two copies with the same Message-ID and can deduplicate)
    assert asyncio.run(successor.deliver(second)) == "delivered"
    assert [(a["number"], a["outcome"]) for a in repository.attempts(communication_id)] == [
        (2, "delivered")
    ]
    assert env.events(communication_id) == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert [received_header(r, "Message-ID") for r in env.peer.received] == [message_id] * 2


# -- clocks ------------------------------------------------------------------------------------


def test_undeliverable_message_gets_a_delay_warning_then_non_delivery(
    unreachable_env: Env,
) -> None:
    env = unreachable_env
    ((communication_id, message_id),) = env.queue(1).items()
    worker = env.worker()
    assert asyncio.run(worker.run_until_idle(max_rounds=1)) == 1

    deferred = env.sp.communications.get(communication_id)
    assert deferred is not None and deferred.status == "queued" and deferred.attempts == 1
    (attempt,) = env.sp.communications.attempts(communication_id)
    assert attempt["outcome"] == "deferred" and attempt["reply_code"] is None
    timeline = env.sp.communications.timeline(env.tenant_id, communication_id)
    failure = timeline[1].record
    assert failure["event"]["name"] == "RelayToNonERDSFailure"
    assert failure["event"]["uri"] == ETSI + "RelayToNonERDSFailure"
    assert [r["code"] for r in failure["reasons"]] == ["connection"]
    assert failure["details"]["temporary"] is True

    now = datetime.now(UTC)
    assert worker.sweep_clocks(now + timedelta(hours=11)) == (0, 0)
    assert worker.sweep_clocks(now + timedelta(hours=13)) == (1, 0)
    assert worker.sweep_clocks(now + timedelta(hours=13)) == (0, 0)  # warned once only
    assert env.sp.communications.get(communication_id).status == "queued"  # type: ignore[union-attr]

    assert worker.sweep_clocks(now + timedelta(hours=25)) == (0, 1)
    assert worker.sweep_clocks(now + timedelta(hours=25)) == (0, 0)
    failed = env.sp.communications.get(communication_id)
    assert failed is not None and failed.status == "failed"
    assert failed.certificate_due == 1  # its certificate will be issued

    timeline = env.sp.communications.timeline(env.tenant_id, communication_id)
    assert [(e.event, e.record["event"]["uri"]) for e in timeline] == [
        ("SubmissionAcceptance", ETSI + "SubmissionAcceptance"),
        ("RelayToNonERDSFailure", ETSI + "RelayToNonERDSFailure"),
        ("DelayWarning", SEALPOST + "DelayWarning"),
        ("NonDelivery", SEALPOST + "NonDelivery"),
    ]
    warning, non_delivery = timeline[2].record, timeline[3].record
    assert [r["code"] for r in warning["reasons"]] == ["delayed"]
    assert "not delivered after 12 h" in warning["reasons"][0]["text"]
    assert [r["code"] for r in non_delivery["reasons"]] == ["expired"]
    assert "not delivered within 24 h" in non_delivery["reasons"][0]["text"]
    assert "last reply" in non_delivery["reasons"][0]["text"]
    for entry in timeline:
        assert entry.record["application_identifier"] == message_id
        assert entry.record["subject"] == {"type": "communication", "id": communication_id}

    # an expired message is not tried again
    assert asyncio.run(worker.run_until_idle()) == 0
