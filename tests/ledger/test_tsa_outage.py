"""Sealing through an HTTP TSA: it works over a real socket, and an outage loses nothing.

The campaign of issue 12, "TSA down for a minute": a whole Sealpost (SMTP, API, delivery,
sequencer, certificate issuer) timestamps through a TSA over HTTP that the test takes down.
"A minute" is the health bound (``SEALPOST_HEALTH_MAX_UNSEALED_SECONDS``, 60 s by default):
the test shortens that bound rather than waiting a real minute.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.ledger.sequencer import HeadSealer, Sequencer
from sealpost.ledger.timestamps import HttpTimeStamper
from sealpost.ledger.verify import verify_bundle
from sealpost.pki.keys import LocalIdentities
from sealpost.pki.tsa import EmbeddedTSA
from tests.support.ledger_checks import assert_ledger_whole, head_timestamps
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit
from tests.support.records import submission
from tests.support.tsa import SwitchableTsa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tsa_url(sealpost: Sealpost) -> Iterator[str]:
    """Sealpost's own /tsa endpoint served by uvicorn on 127.0.0.1, as any TSA would be."""
    port = free_port()
    config = uvicorn.Config(
        create_app(sealpost, start_background=False), host="127.0.0.1", port=port,
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/tsa"
    server.should_exit = True
    thread.join(10)


def test_heads_are_timestamped_by_an_http_tsa(
    sealpost: Sealpost, tenant_id: str, tsa_url: str
) -> None:
    with HttpTimeStamper(tsa_url, timeout=5) as stamper:
        sealer = HeadSealer("test.sealpost.local/ledger", sealpost.seal_identity, stamper)
        record = submission(tenant_id)
        sealpost.log_storage.append([record])
        head = Sequencer(sealpost.log_storage, sealer).seal_pending()
    assert head is not None and head.tree_size == 1
    assert verify_bundle(sealpost.ledger.bundle(record.id, tenant_id)).ok


def test_while_the_tsa_is_down_records_wait_and_are_sealed_once_it_is_back(
    sealpost: Sealpost, tenant_id: str
) -> None:
    dead = HttpTimeStamper(f"http://127.0.0.1:{free_port()}/tsa", timeout=0.5)
    sealer = HeadSealer("test.sealpost.local/ledger", sealpost.seal_identity, dead)
    records = [submission(tenant_id, i) for i in range(20)]
    sealpost.log_storage.append(records)

    stop = threading.Event()
    down = Sequencer(sealpost.log_storage, sealer)
    thread = threading.Thread(
        target=down.run, args=(stop,), kwargs={"window_seconds": 0.02, "lease_seconds": 5}
    )
    thread.start()
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    dead.close()
    assert not thread.is_alive()
    assert sealpost.log_storage.head() is None  # nothing sealed without a timestamp
    assert sealpost.log_storage.pending_count() == 20

    sealpost.start_background()  # the TSA is back (embedded); the lease was released
    deadline = time.monotonic() + 10
    while sealpost.log_storage.pending_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    head = sealpost.log_storage.head()
    assert head is not None and head.tree_size == 20
    assert all(verify_bundle(sealpost.ledger.bundle(r.id, tenant_id)).ok for r in records)


MINUTE = 2.0
"""The test's stand-in for the 60 s health bound: an outage longer than it is "a minute"."""
RECOVERY_BOUND_SECONDS = 25.0
"""docs/operations.md: sealing resumes within the sequencer's retry backoff (10 s at most)
plus one window of the TSA coming back; the rest is room for a busy machine."""


@pytest.fixture
def tsa(identities: LocalIdentities) -> Iterator[SwitchableTsa]:
    with SwitchableTsa(EmbeddedTSA(identities.tsa)) as server:
        yield server


@pytest.fixture
def mail_overrides(tsa: SwitchableTsa) -> dict[str, object]:
    return {
        "tsa_url": tsa.url,
        "tsa_timeout_seconds": 1.0,
        "health_max_unsealed_seconds": MINUTE,
        "signing_worker_enabled": False,
    }


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took ``condition`` to hold (AssertionError naming ``what`` past timeout)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _api_message(n: int) -> dict[str, object]:
    return {
        "from": "care@acme.test",
        "to": [f"api-{n}@{RECIPIENT_DOMAIN}"],
        "subject": f"Tariff notice {n}",
        "text": "Your tariff changes on 2027-01-01.",
    }


def test_tsa_down_for_a_minute_accepts_seals_nothing_says_so_and_recovers_by_itself(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], tsa: SwitchableTsa
) -> None:
    sp, client = mail_env.sp, mail_client
    first = submit(mail_env, make_message("before the outage"), [f"first@{RECIPIENT_DOMAIN}"])
    assert first[0] == 250
    first_id = first[1].decode().split()[-1]
    mail_env.wait_certificate(first_id)
    _wait(lambda: sp.log_storage.pending_count() == 0, 10, "the certificate's record sealed")
    before = sp.log_storage.head()
    assert before is not None

    tsa.down()
    down_at = datetime.now(UTC)
    # acceptance needs no timestamp: 250 and 201 go on, the records wait, committed
    accepted = []
    for n in range(4):
        code, reply = submit(
            mail_env, make_message(f"during {n}"), [f"smtp-{n}@{RECIPIENT_DOMAIN}"]
        )
        assert code == 250, reply
        accepted.append(reply.decode().split()[-1])
    for n in range(2):
        sent = client.post("/v1/communications", json=_api_message(n), headers=mail_key)
        assert sent.status_code == 201, sent.text
        accepted.append(sent.json()["communications"][0]["id"])
    for cid in accepted:  # delivery needs no timestamp either
        mail_env.wait_status(cid, "delivered")
    assert len(mail_env.peer.handler.received) == 1 + len(accepted)

    # nothing sealed without a timestamp: no head, no certificate, while the TSA is away
    waiting = sp.communications.timeline(mail_env.tenant_id, accepted[0])
    assert [e.sealed for e in waiting] == [False] * len(waiting)
    evidence = client.get(f"/v1/evidence/{waiting[0].record_id}", headers=mail_key)
    assert evidence.status_code == 409
    assert evidence.headers["content-type"] == "application/problem+json"
    assert evidence.headers["retry-after"] == "1"
    assert evidence.json()["type"] == "urn:sealpost:problem:not_sealed_yet"
    pdf = client.get(f"/v1/communications/{accepted[0]}/certificate.pdf", headers=mail_key)
    assert pdf.status_code == 409, pdf.text  # on demand too: it would need a timestamp
    assert pdf.json()["type"] == "urn:sealpost:problem:conflict"

    # health says so: the sequencer fails round after round, then "sealing has stopped" once
    # a record has waited longer than the bound
    def stopped() -> bool:
        answer = client.get("/healthz")
        problems = answer.json()["problems"]
        return answer.status_code == 503 and any("sealing has stopped" in p for p in problems)

    _wait(stopped, MINUTE + 20, "/healthz to say that sealing has stopped")
    health = client.get("/healthz").json()
    assert health["status"] == "unhealthy"
    assert health["loops"]["sequencer"]["last_error"] == "TimestampUnavailable"
    assert any("the sequencer loop is failing" in p for p in health["problems"]), health
    assert health["ledger"]["tree_size"] == before.tree_size
    assert health["ledger"]["pending_records"] >= 2 * len(accepted)
    assert sp.log_storage.head() == before

    tsa.up()
    up_at = datetime.now(UTC)
    took = _wait(
        lambda: sp.log_storage.pending_count() == 0, RECOVERY_BOUND_SECONDS, "sealing to resume"
    )
    print(f"TSA outage of {(up_at - down_at).total_seconds():.1f} s; sealed {took:.1f} s after")
    _wait(lambda: client.get("/healthz").status_code == 200, 20, "/healthz to recover")
    assert client.get("/healthz").json()["status"] == "ok"

    assert_ledger_whole(sp)
    stamped = head_timestamps(sp)
    # each head after the outage began was timestamped once the TSA was back, none before
    after = {size: t for size, t in stamped.items() if size > before.tree_size}
    assert after and all(t >= up_at - timedelta(seconds=1) for t in after.values()), after
    for cid in accepted:  # the evidence certificates follow, each sealed and timestamped
        mail_env.wait_certificate(cid)
        for entry in sp.communications.timeline(mail_env.tenant_id, cid):
            bundle = client.get(f"/v1/evidence/{entry.record_id}?wait=5", headers=mail_key)
            assert bundle.is_success, bundle.text
