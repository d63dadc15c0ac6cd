"""Kill -9 of ``sealpost serve`` under load: no acknowledged message is lost.

A real ``sealpost serve --role all`` subprocess takes 1,000 distinct messages from several
SMTP clients and delivers them to a real (slow) recipient server in this process.  When a few
hundred have their ``250`` it is killed with SIGKILL, then started again; the clients resend
what they had no ``250`` for, as any SMTP client does.  In the end every message the clients
were told was accepted has reached the recipient.

SMTP gives no exactly-once, so two kinds of duplicate are possible, and only these two:

* *redelivery*: a delivery in flight at the kill (the dead worker's lease) whose DATA the
  recipient had already accepted is delivered again after the restart — the same
  communication, the same Message-ID;
* *resubmission*: a message stored by Sealpost whose ``250`` never reached the client
  because of the kill is sent again by the client — a second communication, with the same
  Message-ID.

Both carry the same Message-ID, so the recipient can deduplicate.  The test counts them and
prints the figures (``pytest -s``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from sealpost.communications.tables import communications
from tests.support.delivery_load import SlowRecipientServer, numbered_message, received_header
from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.role_kills import Load
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

MESSAGES = 1_000
SENDERS = 4
KILL_AFTER_ACKNOWLEDGED = 300
PEER_DELAY_SECONDS = 0.01
DEADLINE_SECONDS = 180.0


def _in_flight(database_url: str, pid: int) -> dict[str, str]:
    """Communication id → Message-ID of the deliveries the dead process had claimed."""
    engine = create_engine(database_url)
    try:
        c = communications.c
        query = select(c.id, c.message_id).where(
            c.status == "queued",
            c.lease_owner.startswith(f"{socket.gethostname()}:{pid}:", autoescape=True),
        )
        with engine.connect() as conn:
            return {row.id: row.message_id for row in conn.execute(query)}
    finally:
        engine.dispose()


def _statuses(database_url: str) -> tuple[Counter[str], Counter[str]]:
    """(communications per status, communications per Message-ID)."""
    engine = create_engine(database_url)
    try:
        c = communications.c
        with engine.connect() as conn:
            rows = conn.execute(select(c.status, c.message_id)).all()
        return Counter(r.status for r in rows), Counter(r.message_id for r in rows)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_under_load_loses_no_acknowledged_message(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, keys_dir: Path
) -> None:
    started = time.monotonic()
    data_dir = tmp_path / "data"
    extra: dict[str, str] = {}
    if backend == "sqlite":  # the embedded default: <data_dir>/sealpost.db
        database_url = f"sqlite:///{data_dir / 'sealpost.db'}"
    else:
        database_url = request.getfixturevalue("postgres_schema_url")
        extra["SEALPOST_DATABASE_URL"] = database_url
    submission_port = free_port()
    with SlowRecipientServer(delay=PEER_DELAY_SECONDS) as peer:
        env = serve_env(
            data_dir,
            keys_dir,
            submission_port,
            SEALPOST_API_PORT=str(free_port()),
            SEALPOST_HOSTNAME="sealpost.test",
            SEALPOST_DELIVERY_ROUTES=f'{{"{RECIPIENT_DOMAIN}": "127.0.0.1:{peer.port}"}}',
            SEALPOST_DELIVERY_RETRY_INITIAL_SECONDS="0.5",
            SEALPOST_DELIVERY_RETRY_MAX_SECONDS="2",
            SEALPOST_CERTIFICATES_ENABLED="false",
            **extra,
        )
        server = SealpostProcess(tmp_path, env, submission_port)
        server.run("tenant", "create", "acme")
        server.run("tenant", "smtp-network", "acme", "127.0.0.1/32")

        messages = [numbered_message(n, to=f"bob@{RECIPIENT_DOMAIN}") for n in range(MESSAGES)]
        load = Load(submission_port, time.monotonic() + DEADLINE_SECONDS)
        senders = [
            threading.Thread(target=load.send_all, args=(messages[i::SENDERS],), daemon=True)
            for i in range(SENDERS)
        ]
        try:
            server.start()
            for sender in senders:
                sender.start()
            while load.acknowledged_count() < KILL_AFTER_ACKNOWLEDGED:
                assert time.monotonic() < load.deadline, server.log_tail()
                assert any(s.is_alive() for s in senders), "the clients stopped early"
                time.sleep(0.002)
            killed_pid = server.kill()
            acknowledged_at_kill = load.acknowledged_count()
            delivered_at_kill = len(peer.received)
            in_flight = _in_flight(database_url, killed_pid)

            server.start()
            for sender in senders:
                sender.join(max(0.0, load.deadline - time.monotonic()))
            assert not any(s.is_alive() for s in senders), "the clients could not finish"
            assert load.acknowledged_count() == MESSAGES, dict(load.refusals)

            # wait (bounded) until every acknowledged message reached the recipient and
            # Sealpost has nothing left to deliver, so late duplicates are counted too
            acknowledged = set(load.acknowledged)
            while True:
                got = {received_header(r, "Message-ID") for r in list(peer.received)}
                by_status, _ = _statuses(database_url)
                if acknowledged <= got and set(by_status) == {"delivered"}:
                    break
                assert time.monotonic() < load.deadline, (
                    f"still missing {len(acknowledged - got)} messages; statuses {by_status}\n"
                    + server.log_tail()
                )
                time.sleep(0.1)
        finally:
            server.stop()
            load.deadline = 0.0  # the clients give up at once if the test failed
            for sender in senders:
                if sender.ident is not None:
                    sender.join(5)

        received = list(peer.received)
        by_message_id = Counter(received_header(r, "Message-ID") for r in received)
        by_communication = Counter(received_header(r, "X-Sealpost-Communication") for r in received)
        by_status, communications_per_message_id = _statuses(database_url)

    lost = acknowledged - set(by_message_id)
    duplicates = len(received) - len(by_message_id)
    redelivered = {cid: n for cid, n in by_communication.items() if n > 1}
    resubmitted = {mid: n for mid, n in communications_per_message_id.items() if n > 1}
    print(
        f"\n[{backend}] acknowledged {len(acknowledged)} ({acknowledged_at_kill} before the kill,"
        f" {delivered_at_kill} delivered by then); received {len(received)}"
        f" ({len(by_message_id)} distinct Message-IDs); duplicates {duplicates}"
        f" (redelivered {sum(n - 1 for n in redelivered.values())},"
        f" resubmitted {sum(n - 1 for n in resubmitted.values())});"
        f" in flight at the kill {len(in_flight)};"
        f" clients' DATA without reply {sum(load.unanswered_data.values())};"
        f" {time.monotonic() - started:.1f} s"
    )

    assert not lost, f"{len(lost)} acknowledged messages never reached the recipient"
    assert set(by_message_id) == {mid for mid, _ in messages}
    assert by_status == {"delivered": sum(communications_per_message_id.values())}
    # a redelivery is only ever of a delivery the dead worker had claimed
    assert set(redelivered) <= set(in_flight), redelivered
    assert all(n == 2 for n in redelivered.values()), redelivered
    assert len(redelivered) <= len(in_flight)
    # a resubmission only of a message whose DATA lost its reply in the kill, once
    assert set(resubmitted) <= set(load.unanswered_data), resubmitted
    assert all(n == 2 for n in resubmitted.values()), resubmitted
    # every extra copy is one of those two, so it carries a Message-ID seen before
    assert duplicates == sum(n - 1 for n in redelivered.values()) + sum(
        n - 1 for n in resubmitted.values()
    )
