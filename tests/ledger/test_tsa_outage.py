"""Sealing through an HTTP TSA: it works over a real socket, and an outage loses nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.ledger.sequencer import HeadSealer, Sequencer
from sealpost.ledger.timestamps import HttpTimeStamper
from sealpost.ledger.verify import verify_bundle
from tests.support.records import submission


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
