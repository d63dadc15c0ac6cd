"""Regression: a database restart must not stop sealing for good.

It used to: the sequencer took its lease outside its error handling, the thread died with the
connection, submissions were still accepted and ``/healthz`` said ok while nothing was sealed
any more.  Now every loop runs under the supervisor, which restarts it with backoff; this test
restarts a real PostgreSQL server (a private one: the shared server serves other tests) under
a running sequencer and expects sealing to resume by itself, on one consistent log.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from sealpost.api.app import create_app
from sealpost.app import build
from sealpost.config import Settings
from sealpost.ledger import merkle
from sealpost.ledger.records import EvidenceRecord
from sealpost.loops import SETTLE_SECONDS
from tests.conftest import require_service
from tests.support.private_postgres import private_postgres
from tests.support.records import submission

RESUME_BOUND_SECONDS = 15.0
"""Documented in docs/operations.md: backoff tops out at 30 s, but after a short outage the
sequencer is back within a few seconds of the database."""


def _append_retrying(append: object, records: list[EvidenceRecord], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            append(records)  # type: ignore[operator]
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _sealed(sp: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sp.log_storage.pending_count() == 0:  # type: ignore[attr-defined]
            return True
        time.sleep(0.05)
    return False


def test_sealing_resumes_by_itself_after_postgresql_restarts(
    tmp_path: Path, keys_dir: Path
) -> None:
    try:
        server_context = private_postgres()
        server = server_context.__enter__()
    except (FileNotFoundError, OSError) as exc:
        require_service("PostgreSQL server binaries", str(exc))
        pytest.skip("unreachable")  # require_service has failed or skipped already
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            database_url=server.url,
            keys_dir=keys_dir,
            batch_window_ms=20,
            sequencer_lease_seconds=1.0,
            ledger_origin="restart.sealpost.test/ledger",
        )
        sp = build(settings)
        sp.supervisor.first_backoff = 0.2
        tenant_id = sp.tenants.create("restart").id
        sp.start_background()
        try:
            sp.log_storage.append([submission(tenant_id, n) for n in range(5)])
            assert _sealed(sp, 5), "sealing did not start"
            before = sp.log_storage.head()
            assert before is not None and before.tree_size == 5

            server.stop()
            time.sleep(2.0)  # the sequencer hits the dead database, more than once
            health = sp.supervisor.health["sequencer"]
            assert health.restarts >= 1, "the sequencer never noticed the outage"
            assert health.last_error is not None
            server.start()

            _append_retrying(
                sp.log_storage.append, [submission(tenant_id, n) for n in range(5, 12)], 10
            )
            assert _sealed(sp, RESUME_BOUND_SECONDS), "sealing did not resume by itself"
            after = sp.log_storage.head()
            assert after is not None and after.tree_size == 12
            proof = sp.ledger.consistency_proof(before.tree_size, after.tree_size)
            merkle.verify_consistency(  # raises unless the old log is a prefix of the new
                before.tree_size, after.tree_size, before.root_hash, after.root_hash, proof
            )
            with TestClient(create_app(sp, start_background=False)) as client:
                deadline = time.monotonic() + SETTLE_SECONDS + 5
                while client.get("/healthz").status_code != 200:
                    assert time.monotonic() < deadline, "health did not recover"
                    time.sleep(0.5)
        finally:
            sp.stop_background()
            sp.engine.dispose()
    finally:
        server_context.__exit__(None, None, None)
