"""Kill -9 of the ``smtp`` and ``worker`` roles of ``sealpost serve`` under load, on PostgreSQL.

The harness shared by the suite's test (a few hundred messages) and ``bench/crash.py``
(5,000): one ``sealpost serve --role smtp`` and one ``--role worker`` process over the same
PostgreSQL schema and data directory (both may seal: whichever holds the sequencer lease),
SMTP clients that resend what they got no ``250`` for (as any MTA does), and a real, slow
recipient server.  At the planned points of the load a role is killed with SIGKILL and
started again at once, as a service manager would.

SMTP gives no exactly-once, so two kinds of extra copy are possible, and only these two:

* *redelivery*: a delivery in flight at a worker's kill (its lease names the dead process)
  whose DATA the recipient had already accepted is delivered again by the next worker,
  same communication, same Message-ID;
* *resubmission*: a message whose DATA reply was lost in an SMTP process's kill is sent again
  by its client: a second communication with the same Message-ID.

:func:`run` returns the figures; :meth:`Outcome.check` asserts everything the campaign asks.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine, func, select

from sealpost.communications.tables import communications
from sealpost.db.engine import make_test_engine
from sealpost.db.tables import ledger_leases
from sealpost.ledger.repository import SEQUENCER_LEASE, as_utc
from sealpost.ledger.tables import evidence_records, tree_heads
from tests.support.delivery_load import SlowRecipientServer, numbered_message, received_header
from tests.support.ledger_audit import HeadWatcher, LedgerAudit, audit_ledger, latest_head_in
from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

ROLES = ("smtp", "worker")
_QUEUED_AS = re.compile(r"queued as (\S+)")


@dataclass
class Load:
    """What the SMTP clients sent and what they were told."""

    port: int
    deadline: float
    interval: float = 0.0
    """Seconds each client waits between two messages (0: as fast as the server takes them)."""
    acknowledged: dict[str, str] = field(default_factory=dict)
    """Message-ID → the communication its 250 named."""
    unanswered_data: Counter[str] = field(default_factory=Counter)
    """Message-IDs whose DATA got no reply (connection lost): maybe stored, maybe not."""
    refusals: Counter[int] = field(default_factory=Counter)
    """Replies other than 250 to MAIL, RCPT or DATA, by code (the client tries again)."""
    replies: list[tuple[float, int]] = field(default_factory=list)
    """(``time.time()``, code) of every final reply to a message: 250 or a refusal."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def send_all(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One SMTP client: sends each message until it gets a 250 (as an MTA would)."""
        pending = deque(messages)
        client: smtplib.SMTP | None = None
        while pending and time.monotonic() < self.deadline:
            message_id, raw = pending[0]
            in_data = False
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                    client.ehlo("crm.acme.test")
                code, reply = client.mail("service@acme.test")
                if code == 250:
                    code, reply = client.rcpt(f"bob@{RECIPIENT_DOMAIN}")
                if code == 250:
                    in_data = True
                    code, reply = client.data(raw)
                    in_data = False
                if code == 250:
                    found = _QUEUED_AS.search(reply.decode())
                    assert found, reply
                    with self.lock:
                        self.acknowledged[message_id] = found.group(1)
                        self.replies.append((time.time(), code))
                    pending.popleft()
                    time.sleep(self.interval)
                else:
                    with self.lock:
                        self.refusals[code] += 1
                        self.replies.append((time.time(), code))
                    client.rset()
                    time.sleep(0.05)
            except smtplib.SMTPDataError as exc:  # a 4xx/5xx to DATA: a reply, not lost
                with self.lock:
                    self.refusals[exc.smtp_code] += 1
                    self.replies.append((time.time(), exc.smtp_code))
                time.sleep(0.05)
            except (OSError, smtplib.SMTPException):
                if in_data:
                    with self.lock:
                        self.unanswered_data[message_id] += 1
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.05)
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


@dataclass
class Kill:
    """One planned kill: after ``at`` of the messages have their 250, kill ``roles``."""

    at: float
    roles: tuple[str, ...]
    killed_at: float = 0.0
    """Wall-clock time (``time.time()``) of the SIGKILL."""
    acknowledged: int = 0
    in_flight: dict[str, str] = field(default_factory=dict)
    """Communication id → Message-ID of the deliveries the dead worker had claimed."""
    held_sequencer: list[str] = field(default_factory=list)
    """The killed roles that held the sequencer lease."""
    restarted_in: float = 0.0
    """Seconds from the kill until the restarted roles were ready."""
    recovered: dict[str, float] = field(default_factory=dict)
    """Seconds from the kill to the first acceptance / delivery / tree head after it."""


@dataclass
class Outcome:
    messages: int
    load: Load
    kills: list[Kill]
    received: list[tuple[str | None, str | None]]
    """(Message-ID, communication id) of every copy the recipient accepted."""
    evidence: dict[str, list[str]]
    """Communication id → its evidence events, in order."""
    statuses: Counter[str]
    per_message_id: Counter[str]
    ledger: LedgerAudit
    seconds: float
    settle_seconds: float
    audit_seconds: float

    @property
    def redelivered(self) -> dict[str, int]:
        by_communication = Counter(c for _, c in self.received)
        return {c: n for c, n in by_communication.items() if n > 1}

    @property
    def resubmitted(self) -> dict[str, int]:
        return {m: n for m, n in self.per_message_id.items() if n > 1}

    @property
    def duplicates(self) -> int:
        return len(self.received) - len({m for m, _ in self.received})

    def report(self) -> str:
        lines = [
            f"messages {self.messages}; 250s {len(self.load.acknowledged)}; "
            f"refusals {dict(self.load.refusals)}; DATA without reply "
            f"{sum(self.load.unanswered_data.values())}",
            f"delivered {len(self.received)} copies of "
            f"{len({m for m, _ in self.received})} Message-IDs; duplicates {self.duplicates} "
            f"(redelivered {sum(n - 1 for n in self.redelivered.values())}, resubmitted "
            f"{sum(n - 1 for n in self.resubmitted.values())})",
            f"sealed: {self.ledger.summary()}",
        ]
        for kill in self.kills:
            recovered = ", ".join(f"{k} {v:.1f} s" for k, v in kill.recovered.items())
            lines.append(
                f"kill -9 {'+'.join(kill.roles)} at {kill.acknowledged} 250s: in flight "
                f"{len(kill.in_flight)}, sequencer held by {kill.held_sequencer or 'the other'}"
                f"; restarted in {kill.restarted_in:.1f} s; first after the kill: {recovered}"
            )
        lines.append(
            f"total {self.seconds:.1f} s (everything delivered and sealed "
            f"{self.settle_seconds:.1f} s after the last 250; audit {self.audit_seconds:.1f} s)"
        )
        return "\n".join(lines)

    def check(self) -> None:
        """Everything the campaign asks of a kill -9 under load."""
        acknowledged = self.load.acknowledged
        assert len(acknowledged) == self.messages, "the clients could not send everything"
        got = {m for m, _ in self.received}
        lost = set(acknowledged) - got
        assert not lost, f"{len(lost)} messages answered 250 never reached the recipient"
        # a 250 only after a durable write: each 250 names a stored, accepted communication
        for message_id, communication_id in acknowledged.items():
            events = self.evidence.get(communication_id)
            assert events, f"{message_id}: 250 named {communication_id}, which is not stored"
        assert set(self.statuses) == {"delivered"}, self.statuses
        # each communication's evidence says once what happened, however often SMTP did it
        for communication_id, events in self.evidence.items():
            assert events == ["SubmissionAcceptance", "RelayToNonERDS"], (
                communication_id,
                events,
            )
        # extra copies only where a kill cut a delivery or a reply short, once per such cut
        in_flight = Counter(c for kill in self.kills for c in kill.in_flight)
        for communication_id, copies in self.redelivered.items():
            assert copies - 1 <= in_flight[communication_id], (communication_id, copies)
        for message_id, copies in self.resubmitted.items():
            assert copies - 1 <= self.load.unanswered_data[message_id], (message_id, copies)
        assert self.duplicates == sum(n - 1 for n in self.redelivered.values()) + sum(
            n - 1 for n in self.resubmitted.values()
        )


def _start(processes: dict[str, SealpostProcess], roles: Sequence[str]) -> None:
    """Start these roles side by side (a start takes seconds: imports, keys, migrations)."""
    with ThreadPoolExecutor(len(roles)) as pool:
        for future in [pool.submit(processes[role].start, role) for role in roles]:
            future.result()


def _lease_holder_pid(engine: Engine) -> int | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(ledger_leases.c.holder, ledger_leases.c.expires_at).where(
                ledger_leases.c.name == SEQUENCER_LEASE
            )
        ).first()
    if row is None or as_utc(row.expires_at) < datetime.now(UTC):
        return None
    return int(row.holder.split(":")[1])


def _in_flight(engine: Engine, pid: int) -> dict[str, str]:
    c = communications.c
    query = select(c.id, c.message_id).where(
        c.status == "queued",
        c.lease_owner.startswith(f"{socket.gethostname()}:{pid}:", autoescape=True),
    )
    with engine.connect() as conn:
        return {row.id: row.message_id for row in conn.execute(query)}


def _first_after(engine: Engine, moment: float) -> dict[str, float]:
    """Seconds from ``moment`` to the first acceptance, delivery and tree head after it."""
    since = datetime.fromtimestamp(moment, UTC)
    r = evidence_records.c
    found: dict[str, float] = {}
    with engine.connect() as conn:
        for name, event in (("250", "SubmissionAcceptance"), ("delivery", "RelayToNonERDS")):
            first = conn.execute(
                select(func.min(r.created_at)).where(r.event == event, r.created_at > since)
            ).scalar_one_or_none()
            if first is not None:
                found[name] = as_utc(first).timestamp() - moment
        head = conn.execute(
            select(func.min(tree_heads.c.head_time)).where(tree_heads.c.head_time > since)
        ).scalar_one_or_none()
        if head is not None:
            found["tree head"] = as_utc(head).timestamp() - moment
    return found


def _pending(engine: Engine) -> int:
    r = evidence_records.c
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(r.leaf_index.is_(None))).scalar_one())


def _statuses(engine: Engine) -> tuple[Counter[str], Counter[str]]:
    c = communications.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.status, c.message_id)).all()
    return Counter(r.status for r in rows), Counter(r.message_id for r in rows)


def _evidence(engine: Engine) -> dict[str, list[str]]:
    r = evidence_records.c
    found: dict[str, list[str]] = {}
    query = select(r.subject_id, r.event).where(r.subject_type == "communication")
    with engine.connect() as conn:
        for row in conn.execute(query.order_by(r.seq)):
            found.setdefault(row.subject_id, []).append(row.event)
    return found


def run(
    workdir: Path,
    keys_dir: Path,
    database_url: str,
    trust_roots: Sequence[x509.Certificate],
    *,
    messages: int,
    kills: Sequence[Kill],
    senders: int = 4,
    rate: float | None = None,
    peer_delay: float = 0.01,
    sequencer_lease_seconds: float = 3.0,
    deadline_seconds: float = 600.0,
    watch_interval: float = 0.25,
) -> Outcome:
    """Run the load (``rate`` messages/s at most, over ``senders`` clients) with its kills;
    wait until everything is delivered and sealed."""
    started = time.monotonic()
    submission_port = free_port()
    data_dir = workdir / "data"
    engine = make_test_engine(database_url)
    with SlowRecipientServer(delay=peer_delay) as peer:
        env = serve_env(
            data_dir,
            keys_dir,
            submission_port,
            SEALPOST_DATABASE_URL=database_url,
            SEALPOST_HOSTNAME="sealpost.test",
            SEALPOST_DELIVERY_ROUTES=f'{{"{RECIPIENT_DOMAIN}": "127.0.0.1:{peer.port}"}}',
            SEALPOST_DELIVERY_RETRY_INITIAL_SECONDS="0.5",
            SEALPOST_DELIVERY_RETRY_MAX_SECONDS="2",
            SEALPOST_CERTIFICATES_ENABLED="false",
            # the archive's follower would archive each sent message after its delivery (an
            # Archived record the wait below does not know to wait for): the archive of sent
            # mail is tested in tests/archive/test_journal.py
            SEALPOST_ARCHIVE_OUTGOING="false",
            SEALPOST_SEQUENCER_LEASE_SECONDS=str(sequencer_lease_seconds),
        )
        processes = {}
        for role in ROLES:
            (workdir / role).mkdir(parents=True, exist_ok=True)
            processes[role] = SealpostProcess(workdir / role, env, submission_port)
        processes["smtp"].run("tenant", "create", "acme")
        processes["smtp"].run("tenant", "smtp-network", "acme", "127.0.0.1/32")

        corpus = [numbered_message(n, to=f"bob@{RECIPIENT_DOMAIN}") for n in range(messages)]
        interval = senders / rate if rate else 0.0
        load = Load(submission_port, time.monotonic() + deadline_seconds, interval)
        threads = [
            threading.Thread(target=load.send_all, args=(corpus[i::senders],), daemon=True)
            for i in range(senders)
        ]
        plan = sorted(kills, key=lambda k: k.at)

        def logs() -> str:
            return "\n".join(p.log_tail() for p in processes.values())

        watcher = HeadWatcher(latest_head_in(engine), watch_interval)
        try:
            watcher.__enter__()
            _start(processes, ROLES)
            for thread in threads:
                thread.start()
            for kill in plan:
                while load.acknowledged_count() < kill.at * messages:
                    assert time.monotonic() < load.deadline, logs()
                    assert any(t.is_alive() for t in threads), "the clients stopped early"
                    time.sleep(0.002)
                holder = _lease_holder_pid(engine)
                pids = {}
                kill.killed_at = time.time()
                for role in kill.roles:
                    pids[role] = processes[role].kill()
                kill.acknowledged = load.acknowledged_count()
                kill.held_sequencer = [r for r, pid in pids.items() if pid == holder]
                if "worker" in pids:
                    kill.in_flight = _in_flight(engine, pids["worker"])
                _start(processes, kill.roles)
                kill.restarted_in = time.time() - kill.killed_at
            for thread in threads:
                thread.join(max(0.0, load.deadline - time.monotonic()))
            assert not any(t.is_alive() for t in threads), "the clients could not finish"
            last_250 = time.monotonic()

            # wait until every 250 reached the recipient, nothing is left to deliver and
            # everything is sealed, so that late duplicates are counted too
            acknowledged = set(load.acknowledged)
            while True:
                got = {received_header(r, "Message-ID") for r in list(peer.received)}
                by_status, _ = _statuses(engine)
                delivered = acknowledged <= got and set(by_status) == {"delivered"}
                if delivered and _pending(engine) == 0:
                    break
                assert time.monotonic() < load.deadline, (
                    f"still missing {len(acknowledged - got)} messages; statuses {by_status}; "
                    f"{_pending(engine)} records unsealed\n{logs()}"
                )
                time.sleep(0.1)
            settled = time.monotonic()
        finally:
            watcher.__exit__()
            for process in processes.values():
                process.stop()
            load.deadline = 0.0  # the clients give up at once if the run failed
            for thread in threads:
                if thread.ident is not None:
                    thread.join(5)

        for kill in plan:
            kill.recovered = _first_after(engine, kill.killed_at)
        received = [
            (received_header(r, "Message-ID"), received_header(r, "X-Sealpost-Communication"))
            for r in list(peer.received)
        ]
    statuses, per_message_id = _statuses(engine)
    evidence = _evidence(engine)
    engine.dispose()
    audit_started = time.monotonic()
    ledger = audit_ledger(database_url, trust_roots, watcher.seen)
    return Outcome(
        messages=messages,
        load=load,
        kills=list(plan),
        received=received,
        evidence=evidence,
        statuses=statuses,
        per_message_id=per_message_id,
        ledger=ledger,
        seconds=audit_started - started,
        settle_seconds=settled - last_250,
        audit_seconds=time.monotonic() - audit_started,
    )
