"""A process killed (SIGKILL) while appending and sealing loses nothing and seals nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from sealpost.app import Sealpost
from sealpost.config import Settings
from sealpost.ledger import merkle
from sealpost.ledger.tables import evidence_records

ROOT = Path(__file__).resolve().parents[2]


def _child_env(settings: Settings, window_ms: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SEALPOST_DATA_DIR=str(settings.data_dir),
        SEALPOST_DATABASE_URL=settings.resolved_database_url,
        SEALPOST_KEYS_DIR=str(settings.resolved_keys_dir),
        SEALPOST_BATCH_WINDOW_MS=str(window_ms),
        SEALPOST_SEQUENCER_LEASE_SECONDS="0.3",  # the next life takes over at once
        SEALPOST_LEDGER_ORIGIN=settings.ledger_origin,
        SEALPOST_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def _run_and_kill(settings: Settings, tenant_id: str, window_ms: int, after: float) -> set[str]:
    """Start the appender, SIGKILL it after ``after`` seconds; the ids it said were committed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.append_forever", tenant_id],
        cwd=ROOT,
        env=_child_env(settings, window_ms),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    first = child.stdout.readline()  # started (imports take seconds on a busy machine)
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    stdout, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, stderr
    committed = {
        rid
        for line in [first, *stdout.splitlines()]
        if line.startswith("committed ")
        for rid in line.split()[1:]
    }
    assert committed, f"the child committed nothing before the kill: {stderr[-2000:]}"
    return committed


def test_killed_mid_stream_then_restarted_every_record_is_sealed_exactly_once(
    sealpost: Sealpost, tenant_id: str
) -> None:
    settings = sealpost.settings
    promised = set()
    # Three lives: killed mostly while records wait (long window), then while sealing often.
    for window_ms, after in ((1000, 2.5), (20, 2.0), (5, 1.7), (1, 2.3)):
        promised |= _run_and_kill(settings, tenant_id, window_ms, after)

    pending_before = sealpost.log_storage.pending_count()
    sealpost.sequencer.seal_all()  # the restart
    assert sealpost.log_storage.pending_count() == 0

    with sealpost.engine.connect() as conn:
        rows = conn.execute(
            select(
                evidence_records.c.id, evidence_records.c.leaf_index, evidence_records.c.leaf_hash
            ).order_by(evidence_records.c.leaf_index)
        ).all()
    stored_ids = {r.id for r in rows}
    assert promised <= stored_ids, f"{len(promised - stored_ids)} committed records were lost"
    assert [r.leaf_index for r in rows] == list(range(len(rows))), "gaps or duplicate positions"

    head = sealpost.log_storage.head()
    assert head is not None and head.tree_size == len(rows)
    assert head.root_hash == merkle.root_from_leaf_hashes([bytes(r.leaf_hash) for r in rows])

    # every earlier head is a prefix of the final tree: nothing was ever sealed differently
    state_sizes = [h for h in _head_sizes(sealpost)]
    assert state_sizes == sorted(set(state_sizes))
    for size in state_sizes[:-1]:
        old = sealpost.log_storage.head(size)
        assert old is not None
        merkle.verify_consistency(
            size,
            head.tree_size,
            old.root_hash,
            head.root_hash,
            sealpost.ledger.consistency_proof(size, head.tree_size),
        )
    print(f"records: {len(rows)}, pending at restart: {pending_before}, heads: {len(state_sizes)}")


def _head_sizes(sealpost: Sealpost) -> list[int]:
    from sealpost.ledger.tables import tree_heads

    with sealpost.engine.connect() as conn:
        return list(
            conn.execute(select(tree_heads.c.tree_size).order_by(tree_heads.c.tree_size)).scalars()
        )
