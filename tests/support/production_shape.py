"""Sealpost in its production shape: one ``sealpost serve`` process per role over one
PostgreSQL schema, the real RabbitMQ and a shared blob store, under certified mail.

Processes: ``smtp``, ``worker``, ``dispatcher`` and two ``api`` (``api-a``, ``api-b``), each
may also be the sequencer (one at a time, by lease).  SMTP clients submit numbered messages
and resend what got no ``250`` (as an MTA does, see :class:`tests.support.role_kills.Load`);
API clients POST through both API processes, switching to the other one and sending again
with the same ``Idempotency-Key`` when one does not answer.  A real SMTP peer receives the
deliveries, a consumer on the tenant's RabbitMQ queue the events.

A plan of :class:`Stop` values SIGTERMs a process at a point of the load and starts it again,
as a service manager does on a restart; right after it exits, the lease columns are read:
nothing may still name it (released, not left to expire).

:func:`run` returns an :class:`Outcome`; :meth:`Outcome.check` asserts exactly-once of every
step: one delivery per communication, one record per event of its life, each record sealed
once, one evidence certificate, one AMQP message per outbox event.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from sqlalchemy import Engine, func, select

from sealpost.communications.tables import communications, evidence_certificates
from sealpost.db.engine import make_test_engine
from sealpost.db.tables import ledger_leases
from sealpost.events.tables import outbox_events, webhook_deliveries
from sealpost.ledger.repository import as_utc
from sealpost.ledger.tables import evidence_records
from tests.support.amqp import QueueConsumer, Topology
from tests.support.delivery_load import SlowRecipientServer, numbered_message, received_header
from tests.support.ledger_audit import HeadWatcher, LedgerAudit, audit_ledger, latest_head_in
from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.role_kills import Load
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

PROCESSES: dict[str, str] = {
    "smtp": "smtp",
    "worker": "worker",
    "dispatcher": "dispatcher",
    "api-a": "api",
    "api-b": "api",
}
"""Process name → its ``--role``."""


@dataclass
class Stop:
    """One planned SIGTERM: once ``at`` of the messages are accepted, stop ``process``."""

    at: float
    process: str
    pid: int = 0
    held_before: list[str] = field(default_factory=list)
    """The leases it held just before the SIGTERM (sequencer, dispatcher, claimed rows)."""
    held_after: list[str] = field(default_factory=list)
    """Still naming it, unexpired, right after it exited: must be empty."""
    exit_code: int | None = None
    exit_seconds: float = 0.0
    restarted_in: float = 0.0


@dataclass
class ApiLoad:
    """API clients: one POST per message, through both API processes."""

    ports: Sequence[int]
    key: str
    deadline: float
    accepted: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key → the communication its answer named."""
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_all(self, numbers: Sequence[int], first_port: int) -> None:
        turn = first_port
        with httpx.Client(timeout=30) as client:
            for n in numbers:
                key = f"api-{n:05d}"
                body = {
                    "from": "service@acme.test",
                    "to": [f"ann.{n}@{RECIPIENT_DOMAIN}"],
                    "subject": f"Notice {n}",
                    "text": f"Your contract {n} changes on 2027-01-01.",
                }
                while time.monotonic() < self.deadline:
                    port = self.ports[turn % len(self.ports)]
                    turn += 1
                    try:
                        answer = client.post(
                            f"http://127.0.0.1:{port}/v1/communications",
                            json=body,
                            headers={"Authorization": f"Bearer {self.key}", "Idempotency-Key": key},
                        )
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code in (200, 201):
                        with self.lock:
                            self.accepted[key] = answer.json()["communications"][0]["id"]
                        break
                    with self.lock:
                        self.retries += 1
                    time.sleep(0.1)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


@dataclass
class Outcome:
    smtp_messages: int
    api_messages: int
    load: Load
    api: ApiLoad
    stops: list[Stop]
    received: list[tuple[str | None, str | None]]
    """(Message-ID, communication id) of every copy the peer accepted."""
    evidence: dict[str, list[str]]
    statuses: Counter[str]
    certificates: Counter[str]
    """Communication id → evidence certificates stored."""
    events: Counter[tuple[str, str]]
    """(subject, type) → outbox events."""
    outbox_ids: set[str]
    records: int
    """Evidence records stored (every one must be sealed once)."""
    published: Counter[str]
    """Event id → AMQP messages the consumer got."""
    ledger: LedgerAudit
    seconds: float
    settle_seconds: float

    def report(self) -> str:
        lines = [
            f"{self.smtp_messages} by SMTP ({len(self.load.acknowledged)} 250s, refusals "
            f"{dict(self.load.refusals)}, DATA without reply "
            f"{sum(self.load.unanswered_data.values())}); {self.api_messages} by the API "
            f"({self.api.count()} accepted, {self.api.retries} retries on the other process)",
            f"delivered {len(self.received)} copies; certificates "
            f"{sum(self.certificates.values())}; outbox events {len(self.outbox_ids)}, AMQP "
            f"messages {sum(self.published.values())}",
            f"sealed: {self.ledger.summary()}",
        ]
        for stop in self.stops:
            lines.append(
                f"SIGTERM {stop.process} (pid {stop.pid}) at {stop.at:.0%}: exit "
                f"{stop.exit_code} in {stop.exit_seconds:.1f} s; held before "
                f"{stop.held_before or 'nothing'}, after {stop.held_after or 'nothing'}; "
                f"restarted in {stop.restarted_in:.1f} s"
            )
        lines.append(
            f"total {self.seconds:.1f} s; everything delivered, certified, sealed and "
            f"published {self.settle_seconds:.1f} s after the last acceptance"
        )
        return "\n".join(lines)

    def check(self) -> None:
        """Each step exactly once, and a clean exit of every SIGTERMed process."""
        accepted = set(self.load.acknowledged.values()) | set(self.api.accepted.values())
        assert len(self.load.acknowledged) == self.smtp_messages, "SMTP clients did not finish"
        assert self.api.count() == self.api_messages, "API clients did not finish"
        total = self.smtp_messages + self.api_messages
        assert len(self.evidence) == total, f"{len(self.evidence)} communications for {total}"
        assert accepted == set(self.evidence), "an acceptance names no stored communication"
        assert set(self.statuses) == {"delivered"}, self.statuses
        copies = Counter(c for _, c in self.received)
        assert set(copies) == accepted, "a communication never reached the peer"
        assert set(copies.values()) == {1}, {c: n for c, n in copies.items() if n > 1}
        per_message_id = Counter(m for m, _ in self.received)
        assert set(per_message_id.values()) == {1}, "a message was submitted twice"
        for communication_id, events in self.evidence.items():
            assert events[:2] == ["SubmissionAcceptance", "RelayToNonERDS"], events
            assert len(events) == len(set(events)), (communication_id, events)
        assert set(self.certificates) == accepted, "a communication has no certificate"
        assert set(self.certificates.values()) == {1}, "a certificate was issued twice"
        assert set(self.events.values()) == {1}, {k: n for k, n in self.events.items() if n > 1}
        assert set(self.published) == self.outbox_ids, "an event never reached RabbitMQ"
        assert set(self.published.values()) == {1}, "an event was published twice"
        assert self.ledger.records == self.records, "a record was not sealed exactly once"
        for stop in self.stops:
            assert stop.exit_code == 0, f"{stop.process} exited {stop.exit_code} on SIGTERM"
            assert not stop.held_after, f"{stop.process} left {stop.held_after} held"


def held_by(engine: Engine, pid: int) -> list[str]:
    """The unexpired leases naming process ``pid`` of this host: named leases (sequencer,
    events dispatcher), claimed deliveries and claimed webhook deliveries."""
    prefix = f"{socket.gethostname()}:{pid}:"
    now = datetime.now(UTC)
    found: list[str] = []
    with engine.connect() as conn:
        for name, until in conn.execute(
            select(ledger_leases.c.name, ledger_leases.c.expires_at).where(
                ledger_leases.c.holder.startswith(prefix, autoescape=True)
            )
        ):
            if as_utc(until) > now:
                found.append(f"lease {name}")
        for table, label in ((communications, "delivery"), (webhook_deliveries, "webhook")):
            count = conn.execute(
                select(func.count()).where(
                    table.c.lease_owner.startswith(prefix, autoescape=True),
                    table.c.lease_until > now,
                )
            ).scalar_one()
            if count:
                found.append(f"{count} {label} claim(s)")
    return found


def _start(processes: Mapping[str, SealpostProcess], names: Sequence[str]) -> None:
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(processes[n].start, PROCESSES[n]) for n in names]
        for future in futures:
            future.result()


def _terminate(process: SealpostProcess) -> tuple[int, int, float]:
    """SIGTERM and wait: (pid, exit code, seconds to exit)."""
    assert process.process is not None
    popen, started = process.process, time.monotonic()
    popen.terminate()
    try:
        code = popen.wait(60)
    except subprocess.TimeoutExpired:
        popen.kill()
        code = popen.wait(10)
    return popen.pid, code, time.monotonic() - started


def _settled(engine: Engine, expected: int) -> tuple[bool, str]:
    """Everything delivered, certified, sealed and positioned?  (and what is missing)"""
    c, r, o = communications.c, evidence_records.c, outbox_events.c
    with engine.connect() as conn:
        statuses = {
            row[0]: row[1]
            for row in conn.execute(select(c.status, func.count()).group_by(c.status))
        }
        certified = conn.execute(
            select(func.count(func.distinct(evidence_certificates.c.communication_id)))
        ).scalar_one()
        pending = conn.execute(select(func.count()).where(r.leaf_index.is_(None))).scalar_one()
        unpositioned = conn.execute(select(func.count()).where(o.position.is_(None))).scalar_one()
    done = (
        statuses == {"delivered": expected}
        and certified == expected
        and pending == 0
        and unpositioned == 0
    )
    return done, (
        f"statuses {statuses}, certified {certified}/{expected}, {pending} records unsealed, "
        f"{unpositioned} events unpositioned"
    )


def run(
    workdir: Path,
    keys_dir: Path,
    database_url: str,
    topology: Topology,
    trust_roots: Sequence[x509.Certificate],
    *,
    smtp_messages: int,
    api_messages: int,
    stops: Sequence[Stop] = (),
    blob_env: Mapping[str, str] | None = None,
    senders: int = 4,
    deadline_seconds: float = 600.0,
) -> Outcome:
    """Run the load with its planned SIGTERMs; wait until every step is done; collect."""
    started = time.monotonic()
    submission_port = free_port()
    data_dir = workdir / "data"  # the blob store all processes share (a bucket: blob_env)
    engine = make_test_engine(database_url)
    tag = uuid.uuid4().hex[:6]
    with SlowRecipientServer(delay=0.005) as peer:
        common = serve_env(
            data_dir,
            keys_dir,
            submission_port,
            SEALPOST_DATABASE_URL=database_url,
            SEALPOST_HOSTNAME="sealpost.test",
            SEALPOST_LEDGER_ORIGIN=f"shape-{tag}.sealpost.test/ledger",
            SEALPOST_DELIVERY_ROUTES=f'{{"{RECIPIENT_DOMAIN}": "127.0.0.1:{peer.port}"}}',
            SEALPOST_DELIVERY_RETRY_INITIAL_SECONDS="0.5",
            SEALPOST_DELIVERY_RETRY_MAX_SECONDS="2",
            SEALPOST_AMQP_URL=topology.url,
            SEALPOST_AMQP_EXCHANGE=topology.exchange,
            SEALPOST_AMQP_QUEUE_PREFIX=topology.queue_prefix,
            # the archive's follower adds an Archived record after each delivery (tested on
            # its own in tests/archive/test_journal.py)
            SEALPOST_ARCHIVE_OUTGOING="false",
            SEALPOST_SHUTDOWN_TIMEOUT_SECONDS="20",
            **(blob_env or {}),
        )
        processes: dict[str, SealpostProcess] = {}
        for name in PROCESSES:
            (workdir / name).mkdir(parents=True, exist_ok=True)
            env = {**common, "SEALPOST_API_PORT": str(free_port())}
            processes[name] = SealpostProcess(workdir / name, env, submission_port)
            processes[name].start_timeout = 90.0  # five processes start at once on 2 CPUs
        admin = processes["smtp"]
        admin.run("tenant", "create", "acme")
        admin.run("tenant", "smtp-network", "acme", "127.0.0.1/32")
        key = admin.run("tenant", "api-key", "acme").strip().splitlines()[-1]
        tenant_id = _tenant_id(engine)
        api_ports = [int(processes[n].env["SEALPOST_API_PORT"]) for n in ("api-a", "api-b")]

        corpus = [numbered_message(n, to=f"bob@{RECIPIENT_DOMAIN}") for n in range(smtp_messages)]
        deadline = time.monotonic() + deadline_seconds
        load = Load(submission_port, deadline)
        api = ApiLoad(api_ports, key, deadline)
        threads = [
            threading.Thread(target=load.send_all, args=(corpus[i::senders],), daemon=True)
            for i in range(senders)
        ] + [
            threading.Thread(
                target=api.send_all, args=(range(api_messages)[i::senders], i), daemon=True
            )
            for i in range(senders)
        ]
        plan = sorted(stops, key=lambda s: s.at)
        total = smtp_messages + api_messages
        watcher = HeadWatcher(latest_head_in(engine), 1.0)
        consumer = QueueConsumer(topology.queue(tenant_id), topology.url)

        def logs() -> str:
            return "\n".join(f"--- {n}\n{p.log_tail()}" for n, p in processes.items())

        try:
            watcher.__enter__()
            consumer.__enter__()
            _start(processes, list(PROCESSES))
            for thread in threads:
                thread.start()
            for stop in plan:
                while load.acknowledged_count() + api.count() < stop.at * total:
                    assert time.monotonic() < deadline, logs()
                    time.sleep(0.01)
                pid = processes[stop.process].process.pid  # type: ignore[union-attr]
                stop.held_before = held_by(engine, pid)
                stop.pid, stop.exit_code, stop.exit_seconds = _terminate(processes[stop.process])
                stop.held_after = held_by(engine, pid)
                restarting = time.monotonic()
                _start(processes, [stop.process])
                stop.restarted_in = time.monotonic() - restarting
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            assert not any(t.is_alive() for t in threads), "the clients could not finish"
            last_accepted = time.monotonic()
            while True:
                done, missing = _settled(engine, total)
                with engine.connect() as conn:
                    events = conn.execute(select(func.count()).select_from(outbox_events))
                    outbox_count = events.scalar_one()
                if done and len(consumer.unique()) >= outbox_count:
                    break
                assert time.monotonic() < deadline, (
                    f"{missing}; {len(consumer.unique())}/{outbox_count} events consumed\n{logs()}"
                )
                time.sleep(0.2)
            time.sleep(1.0)  # a late duplicate (delivery or AMQP) would show up now
            settled = time.monotonic()
        finally:
            watcher.__exit__()
            for process in processes.values():
                process.stop()
            consumer.__exit__()
            load.deadline = api.deadline = 0.0
            for thread in threads:
                if thread.ident is not None:
                    thread.join(5)
        received = [
            (received_header(r, "Message-ID"), received_header(r, "X-Sealpost-Communication"))
            for r in list(peer.received)
        ]
    collected = _collect(engine)
    engine.dispose()
    ledger = audit_ledger(database_url, trust_roots, watcher.seen)
    return Outcome(
        smtp_messages=smtp_messages,
        api_messages=api_messages,
        load=load,
        api=api,
        stops=list(plan),
        received=received,
        evidence=collected[0],
        statuses=collected[1],
        certificates=collected[2],
        events=collected[3],
        outbox_ids=collected[4],
        records=collected[5],
        published=Counter(d.message_id for d in consumer.events()),
        ledger=ledger,
        seconds=time.monotonic() - started,
        settle_seconds=settled - last_accepted,
    )


def _tenant_id(engine: Engine) -> str:
    from sealpost.tenants.tables import tenants

    with engine.connect() as conn:
        return str(conn.execute(select(tenants.c.id).where(tenants.c.name == "acme")).scalar_one())


def _collect(
    engine: Engine,
) -> tuple[
    dict[str, list[str]], Counter[str], Counter[str], Counter[tuple[str, str]], set[str], int
]:
    r, c, o = evidence_records.c, communications.c, outbox_events.c
    evidence: dict[str, list[str]] = {}
    with engine.connect() as conn:
        query = select(r.subject_id, r.event).where(r.subject_type == "communication")
        for row in conn.execute(query.order_by(r.seq)):
            evidence.setdefault(row.subject_id, []).append(row.event)
        statuses = Counter(conn.execute(select(c.status)).scalars())
        certificates = Counter(
            conn.execute(select(evidence_certificates.c.communication_id)).scalars()
        )
        events = Counter(
            (f"{row.subject_type}:{row.subject_id}", row.type)
            for row in conn.execute(select(o.subject_type, o.subject_id, o.type))
        )
        outbox_ids = set(conn.execute(select(o.id)).scalars())
        records = conn.execute(select(func.count()).select_from(evidence_records)).scalar_one()
    return evidence, statuses, certificates, events, outbox_ids, int(records)
