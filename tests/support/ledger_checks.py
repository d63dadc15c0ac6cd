"""What every fault test asks of the ledger afterwards: nothing lost, nothing sealed without a
timestamp, one consistent log.

* every evidence record of the database is in the tree (a leaf index, none pending) and its
  bundle verifies against the local root;
* every tree head carries an RFC 3161 token over its seal signature that verifies (RFC 3161
  §2.4.2) against the local root: no head was ever written without its timestamp;
* every earlier head is a prefix of the last one (RFC 9162 consistency proofs).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from sealpost.app import Sealpost
from sealpost.ledger import merkle
from sealpost.ledger.tables import evidence_records, tree_heads
from sealpost.ledger.timestamps import verify_timestamp_token
from sealpost.ledger.verify import verify_bundle


def head_timestamps(sp: Sealpost) -> dict[int, datetime]:
    """Tree size → the genTime of its head's timestamp token (each token verified)."""
    with sp.engine.connect() as conn:
        sizes = list(
            conn.execute(select(tree_heads.c.tree_size).order_by(tree_heads.c.tree_size)).scalars()
        )
    times = {}
    for size in sizes:
        head = sp.log_storage.head(size)
        assert head is not None
        assert head.timestamp_token, f"head {size} has no timestamp token"
        info = verify_timestamp_token(
            head.timestamp_token, head.signature, trust_roots=sp.trust_roots
        )
        times[size] = info.gen_time
    return times


def assert_ledger_whole(sp: Sealpost) -> int:
    """Every record sealed and verifiable, every head timestamped, one log; returns the size."""
    assert sp.log_storage.pending_count() == 0, "records are still waiting for their seal"
    with sp.engine.connect() as conn:
        rows = conn.execute(
            select(
                evidence_records.c.id, evidence_records.c.tenant_id, evidence_records.c.leaf_index
            ).order_by(evidence_records.c.leaf_index)
        ).all()
    assert [r.leaf_index for r in rows] == list(range(len(rows))), "gaps or duplicate positions"
    times = head_timestamps(sp)
    last = sp.log_storage.head()
    assert last is not None and last.tree_size == len(rows)
    for size in list(times)[:-1]:
        old = sp.log_storage.head(size)
        assert old is not None
        merkle.verify_consistency(
            size,
            last.tree_size,
            old.root_hash,
            last.root_hash,
            sp.ledger.consistency_proof(size, last.tree_size),
        )
    for row in rows:
        report = verify_bundle(sp.ledger.bundle(row.id, row.tenant_id), trust_roots=sp.trust_roots)
        assert report.ok, report.failures
    return len(rows)
