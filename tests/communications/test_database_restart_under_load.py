"""PostgreSQL restarted under load: refusals while it is down, then everything resumes alone.

A real ``sealpost serve`` (every role in one process) runs on a PostgreSQL server of the
test's own (``tests/support/private_postgres.py``: the shared one serves other tests), with
SMTP clients, API clients and an API reader working all along, and a real recipient server.
The database is stopped for a few seconds, then started again; nothing is restarted by hand.

* SMTP answers 4xx while the database is down, never 5xx, and every 250 names a stored
  communication (never a 250 without a durable write);
* the API answers ``503`` problem+json with ``Retry-After`` (never a 500), and every 201
  names a stored communication; the clients resend with their ``Idempotency-Key`` and get
  the same communication, never a second one;
* acceptance, delivery, sealing and evidence certificates resume by themselves within
  ``RESUME_BOUND_SECONDS`` of the database coming back (docs/operations.md), and everything
  accepted is delivered once, sealed once and certified, on one consistent log.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from sqlalchemy import Engine, func, select

from sealpost.communications.tables import communications
from sealpost.db.engine import make_test_engine
from sealpost.ledger.repository import as_utc
from sealpost.ledger.tables import evidence_records, tree_heads
from tests.conftest import require_service
from tests.support.delivery_load import SlowRecipientServer, numbered_message, received_header
from tests.support.ledger_audit import HeadWatcher, ObservedHead, audit_ledger
from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.private_postgres import private_postgres
from tests.support.role_kills import Load
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

SMTP_MESSAGES = 40
API_MESSAGES = 10
OUTAGE_SECONDS = 6.0
RESUME_BOUND_SECONDS = 30.0
"""Documented in docs/operations.md ("Faults, and what follows them"): after the database
comes back, acceptance, delivery, sealing and certificates resume within 30 s."""
DRAIN_SECONDS = 120.0


@dataclass
class Answer:
    at: float
    status: int
    content_type: str
    retry_after: str | None
    body: dict[str, object] | None


@dataclass
class ApiClient:
    """Sends certified emails through the API, each until it gets its 201 (resending with the
    same Idempotency-Key, as the docs tell clients to), and keeps every answer."""

    base: str
    key: str
    count: int
    interval: float
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key → the communication its 201 (or replayed 200) named."""
    stop: threading.Event = field(default_factory=threading.Event)

    def _record(self, response: httpx.Response) -> Answer:
        try:
            body = response.json()
        except ValueError:
            body = None
        answer = Answer(
            time.time(),
            response.status_code,
            response.headers.get("content-type", ""),
            response.headers.get("retry-after"),
            body if isinstance(body, dict) else None,
        )
        self.answers.append(answer)
        return answer

    def send_all(self) -> None:
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as client:
            for n in range(self.count):
                key = f"restart-{n}"
                while not self.stop.is_set():
                    try:
                        response = client.post(
                            "/v1/communications",
                            headers={"Idempotency-Key": key},
                            json={
                                "from": "service@acme.test",
                                "to": [f"carol@{RECIPIENT_DOMAIN}"],
                                "subject": f"API notice {n}",
                                "text": f"Notice {n}.",
                            },
                        )
                    except httpx.TransportError:
                        time.sleep(0.2)
                        continue
                    answer = self._record(response)
                    if answer.status in (200, 201) and answer.body:
                        refs = answer.body["communications"]
                        assert isinstance(refs, list)
                        self.accepted[key] = refs[0]["id"]
                        break
                    time.sleep(float(answer.retry_after or 1))
                time.sleep(self.interval)

    def read_all(self) -> None:
        """An integrator polling its list, all along."""
        with httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as client:
            while not self.stop.wait(0.2):
                try:
                    self._record(client.get("/v1/communications", params={"limit": 1}))
                except httpx.TransportError:
                    continue


def _api_head(port: int, key: str) -> ObservedHead | None:
    """The latest head as an integrator reads it (a 503 while the database is down raises)."""
    answer = httpx.get(
        f"http://127.0.0.1:{port}/v1/ledger/heads/latest",
        headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    body = answer.json()
    return ObservedHead(body["tree_size"], base64.b64decode(body["root_hash"]))


def _first_after(engine: Engine, moment: float, event: str) -> float | None:
    since = datetime.fromtimestamp(moment, UTC)
    r = evidence_records.c
    with engine.connect() as conn:
        if event == "tree head":
            found = conn.execute(
                select(func.min(tree_heads.c.head_time)).where(tree_heads.c.head_time > since)
            ).scalar_one_or_none()
        else:
            found = conn.execute(
                select(func.min(r.created_at)).where(r.event == event, r.created_at > since)
            ).scalar_one_or_none()
    return None if found is None else as_utc(found).timestamp() - moment


def _settled(engine: Engine) -> tuple[bool, str]:
    """Everything delivered, sealed and certified?  (And what is not, when not.)"""
    c = communications.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                c.id, c.status, c.certificate_due, c.certificate_version, c.lease_until, c.attempts
            )
        ).all()
        pending = conn.execute(
            select(func.count()).where(evidence_records.c.leaf_index.is_(None))
        ).scalar_one()
    statuses = Counter(row.status for row in rows)
    behind = [
        row
        for row in rows
        if row.status != "delivered" or row.certificate_due or not row.certificate_version
    ]
    done = set(statuses) == {"delivered"} and not behind and not pending
    return done, f"statuses {dict(statuses)}, {pending} unsealed; behind: {behind[:10]}"


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_restart_under_load_refuses_cleanly_then_everything_resumes(
    tmp_path: Path, keys_dir: Path, root: x509.Certificate
) -> None:
    try:
        server_context = private_postgres()
        server = server_context.__enter__()
    except (FileNotFoundError, OSError) as exc:
        require_service("PostgreSQL server binaries", str(exc))
        pytest.skip("unreachable")  # require_service has failed or skipped already
    submission_port, api_port = free_port(), free_port()
    peer = SlowRecipientServer(delay=0.2)
    try:
        peer.__enter__()
        env = serve_env(
            tmp_path / "data",
            keys_dir,
            submission_port,
            SEALPOST_DATABASE_URL=server.url,
            SEALPOST_API_PORT=str(api_port),
            SEALPOST_HOSTNAME="sealpost.test",
            SEALPOST_DELIVERY_ROUTES=f'{{"{RECIPIENT_DOMAIN}": "127.0.0.1:{peer.port}"}}',
            SEALPOST_DELIVERY_RETRY_INITIAL_SECONDS="0.5",
            SEALPOST_DELIVERY_RETRY_MAX_SECONDS="2",
        )
        sealpost = SealpostProcess(tmp_path, env, submission_port)
        key = sealpost.run("tenant", "create", "acme").strip().splitlines()[-1]
        sealpost.run("tenant", "smtp-network", "acme", "127.0.0.1/32")
        engine = make_test_engine(server.url)

        corpus = [numbered_message(n, to=f"bob@{RECIPIENT_DOMAIN}") for n in range(SMTP_MESSAGES)]
        load = Load(submission_port, time.monotonic() + 300, interval=0.2)
        api = ApiClient(f"http://127.0.0.1:{api_port}", key, API_MESSAGES, interval=0.3)
        threads = [
            threading.Thread(target=load.send_all, args=(corpus[i::2],), daemon=True)
            for i in range(2)
        ]
        threads += [
            threading.Thread(target=api.send_all, daemon=True),
            threading.Thread(target=api.read_all, daemon=True),
        ]
        monitor = HeadWatcher(lambda: _api_head(api_port, key), interval_seconds=0.2)
        try:
            sealpost.start()
            monitor.__enter__()
            for thread in threads:
                thread.start()
            while load.acknowledged_count() < SMTP_MESSAGES // 4:
                assert time.monotonic() < load.deadline, sealpost.log_tail()
                time.sleep(0.05)

            down_from = time.time()
            server.stop()
            down = time.time()
            time.sleep(OUTAGE_SECONDS)
            up_from = time.time()
            server.start()
            up = time.time()

            for thread in threads[:3]:
                thread.join(max(0.0, load.deadline - time.monotonic()))
            assert not any(t.is_alive() for t in threads[:3]), "the clients could not finish"
            deadline = time.monotonic() + DRAIN_SECONDS
            while not (found := _settled(engine))[0]:
                assert time.monotonic() < deadline, f"{found[1]}\n{sealpost.log_tail()}"
                time.sleep(0.2)
            drained = time.time() - up
            resumed = {
                name: _first_after(engine, up, event)
                for name, event in (
                    ("SMTP 250", "SubmissionAcceptance"),
                    ("delivery", "RelayToNonERDS"),
                    ("tree head", "tree head"),
                    ("certificate", "CertificateIssued"),
                )
            }
        finally:
            monitor.__exit__()
            api.stop.set()
            load.deadline = 0.0
            sealpost.stop()
            for thread in threads:
                if thread.ident is not None:
                    thread.join(5)

        c = communications.c
        with engine.connect() as conn:
            stored = {row.id: row.message_id for row in conn.execute(select(c.id, c.message_id))}
            accepted_events = set(
                conn.execute(
                    select(evidence_records.c.subject_id).where(
                        evidence_records.c.event == "SubmissionAcceptance"
                    )
                ).scalars()
            )
            events: dict[str, list[str]] = {}
            query = select(evidence_records.c.subject_id, evidence_records.c.event).order_by(
                evidence_records.c.seq
            )
            for row in conn.execute(query):
                events.setdefault(row.subject_id, []).append(row.event)
        engine.dispose()
        log = (tmp_path / "serve-1.log").read_text(errors="replace")
        audit = audit_ledger(server.url, [root], monitor.seen)
        received = Counter(received_header(r, "X-Sealpost-Communication") for r in peer.received)
    finally:
        peer.__exit__()
        server_context.__exit__(None, None, None)

    waited = log.count("delivery.database_unavailable")
    during = [a for a in api.answers if down_from <= a.at <= up + 1]
    refused = [a for a in api.answers if a.status >= 300]
    smtp_during = Counter(code for at, code in load.replies if down_from <= at <= up + 1)
    first_api = min((a.at - up for a in api.answers if a.status == 201 and a.at > up), default=None)
    resumed["API 201"] = first_api
    print(
        f"\nSMTP: {len(load.acknowledged)} × 250, refusals {dict(load.refusals)} "
        f"(while down: {dict(smtp_during)}); API: {Counter(a.status for a in api.answers)} "
        f"(while down: {Counter(a.status for a in during)}); database down "
        f"{up - down:.1f} s (stop took {down - down_from:.1f} s, start {up - up_from:.1f} s); "
        "first after it came back: "
        + ", ".join(f"{k} {v:.1f} s" if v is not None else f"{k} never" for k, v in resumed.items())
        + f"; everything delivered, sealed and certified {drained:.1f} s after; "
        + f"{waited} waits for the database inside a delivery; "
        + audit.summary()
    )

    # never a 250 or a 201 without a durable write; never a 5xx for an outage of ours
    assert set(load.acknowledged.values()) <= accepted_events
    assert set(api.accepted.values()) <= accepted_events
    assert all(400 <= code < 500 for code in load.refusals), load.refusals
    # a 250 well after the database stopped (a reply in flight at the stop may land late)
    assert all(code != 250 for at, code in load.replies if down + 1.0 <= at <= up_from)
    assert any(400 <= code < 500 for code in smtp_during), "SMTP never met the outage"
    assert monitor.failures > 0 and len(monitor.seen) > 1, "the head monitor missed the outage"
    assert refused and {a.status for a in refused} == {503}, Counter(a.status for a in refused)
    for answer in refused:
        assert answer.content_type.startswith("application/problem+json"), answer
        assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
        assert answer.body is not None and answer.body["status"] == 503, answer
    # the API clients resent with their key: one communication each, not one per try
    assert len(set(api.accepted.values())) == API_MESSAGES
    smtp_stored = len(stored) - API_MESSAGES
    assert len(load.acknowledged) <= smtp_stored
    assert smtp_stored <= len(load.acknowledged) + sum(load.unanswered_data.values())
    # everything accepted delivered once (evidence), sealed once, certified
    for communication_id in stored:
        assert events[communication_id][:2] == ["SubmissionAcceptance", "RelayToNonERDS"]
        assert events[communication_id].count("RelayToNonERDS") == 1
        assert "CertificateIssued" in events[communication_id]
        assert received[communication_id] >= 1
    # and all of it resumed by itself within the documented bound
    for name, seconds in resumed.items():
        assert seconds is not None and seconds <= RESUME_BOUND_SECONDS, (name, seconds)
