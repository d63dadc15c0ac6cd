"""Events on the real RabbitMQ: every state change reaches the tenant's FIFO queue, in order per
subject, matching the evidence; nothing is lost when the broker restarts mid-stream (a private
node: the shared one serves other tests) or when the dispatcher is killed between the broker's
confirm and its own bookkeeping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.events.outbox import AMQP_CURSOR
from sealpost.events.registry import events_for_records
from sealpost.ledger.records import format_time, record_from_json
from tests.support.amqp import QueueConsumer, Topology
from tests.support.ledger_checks import assert_ledger_whole
from tests.support.mail import accept_one, email_settings
from tests.support.private_rabbitmq import PrivateRabbitMQ
from tests.support.smtp_peer import RecipientHandler, RecipientServer


class MixedOutcomes(RecipientHandler):
    """fail-*: 550 (a final failure); slow-*: 451 once, then 250 (a retry); others: 250."""

    seen: set[str]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt.startswith("fail-"):
            return "550 5.1.1 no such user"
        with self.lock:
            first_time = rcpt not in self.seen
            self.seen.add(rcpt)
        if rcpt.startswith("slow-") and first_time:
            return "451 4.3.0 try later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def peer() -> Iterator[RecipientServer]:
    server = RecipientServer()
    server.handler = MixedOutcomes()
    server.handler.seen = set()
    server.controller.handler = server.handler
    with server:
        yield server


def running(settings: Settings, peer: RecipientServer, amqp: Topology) -> Sealpost:
    sp = build(
        email_settings(
            settings,
            peer.port,
            certificates_enabled=False,
            smtp_enabled=False,
            delivery_retry_initial_seconds=0.05,
            delivery_retry_max_seconds=0.2,
            **amqp.settings(),
        )
    )
    sp.start_background()
    sp.start_email()
    sp.start_events()
    return sp


def local_part(i: int) -> str:
    return ("fail-" if i % 10 == 0 else "slow-" if i % 10 == 1 else "ok-") + str(i)


def assert_in_order_per_subject(consumer: QueueConsumer) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """First arrivals, per subject, have sequences 1, 2, 3... (duplicates come later)."""
    seen: set[str] = set()
    by_subject: dict[str, list[dict]] = defaultdict(list)  # type: ignore[type-arg]
    for delivered in consumer.events():
        if delivered.message_id in seen:
            continue
        seen.add(delivered.message_id)
        event = delivered.event
        by_subject[event["subject"]].append(event)
    for subject, events in by_subject.items():
        copies = [
            (i, d.message_id[-6:], int(d.event["sequence"]), d.redelivered)
            for i, d in enumerate(consumer.events())
            if d.event["subject"] == subject
        ]
        assert [int(e["sequence"]) for e in events] == list(range(1, len(events) + 1)), copies
    return by_subject


def test_a_thousand_state_changes_arrive_once_in_order_matching_the_evidence(
    settings: Settings, peer: RecipientServer, amqp: Topology
) -> None:
    sp = running(settings, peer, amqp)
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    try:
        with QueueConsumer(amqp.queue(tenant.id)) as consumer:
            ids = [accept_one(sp, tenant.id, local_part(i)) for i in range(500)]
            unique = consumer.wait_unique(1000, timeout=120)
            time.sleep(0.5)  # anything more would be a duplicate or an event too many
            received = consumer.events()
        assert len(unique) == 1000
        assert len(received) == 1000, Counter(d.message_id for d in received).most_common(3)
        assert all(d.properties["delivery_mode"] == 2 for d in received)  # persistent
        assert all(d.properties["content_type"] == "application/cloudevents+json" for d in received)

        by_subject = assert_in_order_per_subject(consumer)
        assert set(by_subject) == {f"communications/{c}" for c in ids}
        positions: dict[str, list[int]] = defaultdict(list)  # the outbox's own order agrees
        for stored in sp.outbox.page(tenant.id, limit=2000):
            positions[stored.subject].append(stored.sequence)
        assert all(seqs == sorted(seqs) for seqs in positions.values())
        outcomes = Counter(events[-1]["type"] for events in by_subject.values())
        assert outcomes == {
            "sealpost.communication.delivered": 450,  # the 50 "slow" ones after one retry
            "sealpost.communication.failed": 50,
        }
        for cid in ids:  # each event is the evidence timeline's, record for record
            timeline = sp.communications.timeline(tenant.id, cid)
            expected = events_for_records([record_from_json(e.record) for e in timeline])
            events = by_subject[f"communications/{cid}"]
            assert [e["data"]["record_id"] for e in events] == [x.record_id for x in expected]
            assert [e["type"] for e in events] == [x.type for x in expected]
            assert [e["data"] for e in events] == [json.loads(json.dumps(x.data)) for x in expected]
            assert [e["time"] for e in events] == [format_time(x.time) for x in expected]
        queues = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name", "type", "durable", "arguments"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = next(q for q in queues.splitlines() if q.startswith(amqp.queue(tenant.id)))
        assert "quorum" in line and "true" in line and "x-single-active-consumer" in line
        assert sp.outbox.cursor(AMQP_CURSOR) == sp.outbox.backlog()["last_position"]
    finally:
        sp.stop_background()
        sp.engine.dispose()


def test_broker_restarted_mid_stream_loses_nothing_keeps_order_and_health_says_so(
    settings: Settings, peer: RecipientServer, private_rabbitmq: PrivateRabbitMQ
) -> None:
    """A real restart of a broker of the test's own (the shared one serves other tests):
    its process stops, every connection drops, a new one recovers the queues from disk.
    Acceptance goes on meanwhile; the events wait in the outbox (``/healthz`` says so,
    ``degraded``, 200: nothing is lost) and flow in order once the broker is back."""
    tag = uuid.uuid4().hex[:10]
    amqp = Topology(private_rabbitmq.url, f"test.{tag}.events", f"test.{tag}.events.")
    sp = running(settings, peer, amqp)
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    ids: list[str] = []
    stop_sending = threading.Event()
    broker_stopped = threading.Event()

    def stream() -> None:
        for i in range(300):
            if i == 150:  # the second half while the broker is away
                broker_stopped.wait(120)
            if stop_sending.is_set():
                return
            ids.append(accept_one(sp, tenant.id, f"ok-{i}"))
            time.sleep(0.01)

    def health() -> dict[str, Any]:
        answer = client.get("/healthz")
        assert answer.status_code == 200, answer.text  # the broker is not Sealpost: no 503
        body: dict[str, Any] = answer.json()
        return body

    def broker_problem() -> bool:
        return any(p.startswith("RabbitMQ has not confirmed") for p in health()["problems"])

    try:
        with (
            TestClient(create_app(sp, start_background=False)) as client,
            QueueConsumer(amqp.queue(tenant.id), url=amqp.url) as consumer,
        ):
            sender = threading.Thread(target=stream)
            sender.start()
            consumer.wait_unique(100, timeout=60)
            private_rabbitmq.stop()  # every connection drops; the node is gone
            broker_stopped.set()
            deadline = time.monotonic() + 30
            while not broker_problem() or len(ids) < 200:  # acceptance goes on meanwhile
                assert time.monotonic() < deadline, (len(ids), health())
                time.sleep(0.1)
            assert health()["status"] == "degraded"
            backlog = sp.outbox.backlog()
            assert backlog["last_position"] > sp.outbox.cursor(AMQP_CURSOR)
            restarted_in = private_rabbitmq.start()
            sender.join(120)
            assert not sender.is_alive()
            unique = consumer.wait_unique(2 * len(ids), timeout=120)
            time.sleep(0.5)
            received = consumer.events()
            deadline = time.monotonic() + 30
            while broker_problem() or health()["status"] != "ok":
                assert time.monotonic() < deadline, health()
                time.sleep(0.1)
        assert len(ids) == 300
        assert len(unique) == 600  # 0 lost
        by_subject = assert_in_order_per_subject(consumer)
        assert all(
            [e["type"] for e in events]
            == ["sealpost.communication.accepted", "sealpost.communication.delivered"]
            for events in by_subject.values()
        )
        assert sp.outbox.cursor(AMQP_CURSOR) == sp.outbox.backlog()["last_position"]
        deadline = time.monotonic() + 15
        while sp.log_storage.pending_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_ledger_whole(sp)
        duplicates = len(received) - len(unique)
        print(
            f"broker restart: back in {restarted_in:.1f} s; {len(received)} received, "
            f"{duplicates} duplicates"
        )
    finally:
        stop_sending.set()
        broker_stopped.set()
        sp.stop_background()
        sp.engine.dispose()


def _worker(workdir: Path, env: dict[str, str], n: int) -> subprocess.Popen[bytes]:
    log = (workdir / f"worker-{n}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sealpost", "serve", "--role", "dispatcher"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return process


@pytest.mark.postgres
def test_dispatcher_killed_after_the_confirms_before_its_cursor_moves_publishes_again(
    postgres_schema_url: str, keys_dir: Path, tmp_path: Path, amqp: Topology
) -> None:
    """The kill lands exactly in the window: this test holds the ``amqp`` cursor row locked,
    so the dispatcher publishes, gets every confirm, and blocks on moving its cursor."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=postgres_schema_url,
        keys_dir=keys_dir,
        batch_window_ms=10,
        delivery_enabled=False,
    )
    sp = build(settings)
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    ids = [accept_one(sp, tenant.id, f"ok-{i}") for i in range(50)]
    assert sp.outbox.advance_cursor(AMQP_CURSOR, 0, 0)  # the row exists, at 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env.update(
        SEALPOST_DATABASE_URL=postgres_schema_url,
        SEALPOST_DATA_DIR=str(tmp_path / "data"),
        SEALPOST_KEYS_DIR=str(keys_dir),
        SEALPOST_AMQP_URL=amqp.url,
        SEALPOST_AMQP_EXCHANGE=amqp.exchange,
        SEALPOST_AMQP_QUEUE_PREFIX=amqp.queue_prefix,
        SEALPOST_EVENTS_LEASE_SECONDS="1",
        SEALPOST_DELIVERY_ENABLED="false",
        SEALPOST_CERTIFICATES_ENABLED="false",
        SEALPOST_LOG_LEVEL="WARNING",
    )
    holder = create_engine(postgres_schema_url)  # the test's own connection, to hold a lock
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with QueueConsumer(amqp.queue(tenant.id)) as consumer:
            with holder.connect() as lock:
                lock.execute(
                    text("SELECT position FROM outbox_cursors WHERE name = 'amqp' FOR UPDATE")
                )
                processes.append(_worker(tmp_path, env, 1))
                first = consumer.wait_unique(50, timeout=60)  # published and confirmed ...
                time.sleep(0.5)
                assert sp.outbox.cursor(AMQP_CURSOR) == 0  # ... but not marked
                os.kill(processes[0].pid, signal.SIGKILL)
                processes[0].wait(10)
                lock.rollback()
            processes.append(_worker(tmp_path, env, 2))
            deadline = time.monotonic() + 60
            while len(consumer.events()) < 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            received = consumer.events()
        counts = Counter(d.message_id for d in received)
        assert len(counts) == 50 and set(counts.values()) == {2}  # each published again, once
        unique = consumer.unique()
        assert {d.message_id: d.body for d in unique.values()} == {
            k: v.body for k, v in first.items()
        }
        assert {d.event["subject"] for d in unique.values()} == {f"communications/{c}" for c in ids}
        deadline = time.monotonic() + 10
        while sp.outbox.cursor(AMQP_CURSOR) != 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sp.outbox.cursor(AMQP_CURSOR) == 50
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        holder.dispose()
        sp.stop_background()
        sp.engine.dispose()
