"""What a fault test asks of the ledger once the dust settles: one log, each record sealed once.

After a crash, a database restart or a sequencer take-over, :func:`audit_ledger` reads the
whole ledger back from the database and checks, with Sealpost's own reader and verifier:

* every committed evidence record is in the tree exactly once: positions ``0..n-1`` without
  gap or repeat, each leaf hash the RFC 9162 hash of the stored record, no record twice;
* every stored tree head (and every head a test *observed* while the system ran) is the
  root of a prefix of that one final log: no fork, ever;
* consistency proofs (RFC 9162 §2.1.4) verify between every pair of observed heads (rebuilt
  from the leaves alone), and between each stored head and the next, as the server serves
  them;
* heads grow in size and in time, and each is signed by the seal and timestamped (RFC 3161):
  the bundle of the first record each head sealed passes the offline verifier, and so do
  bundles served by the ledger reader for records spread over the log.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import Connection, Engine, select

from sealpost.db.engine import make_engine
from sealpost.ledger import merkle
from sealpost.ledger.bundle import build_bundle
from sealpost.ledger.merkle import NodeId
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.repository import SqlLogStorage
from sealpost.ledger.storage import LogState, StoredRecord
from sealpost.ledger.tables import evidence_records, tree_heads, x509_certificates
from sealpost.ledger.tree_head import Checkpoint, SignedTreeHead
from sealpost.ledger.verify import verify_bundle


@dataclass(frozen=True)
class ObservedHead:
    """A tree head as some client saw it at some moment (size and root are what count)."""

    tree_size: int
    root_hash: bytes


class HeadWatcher:
    """Watches the latest tree head in a thread, as a monitor of the log would, and keeps
    every distinct one it saw (a fetch that fails, the database being down, is skipped)."""

    def __init__(
        self, fetch: Callable[[], ObservedHead | None], interval_seconds: float = 0.1
    ) -> None:
        self.fetch = fetch
        self.interval = interval_seconds
        self.seen: list[ObservedHead] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                head = self.fetch()
            except Exception:  # the database or the server is down: a monitor keeps watching
                self.failures += 1
                continue
            if head is not None and (not self.seen or self.seen[-1] != head):
                self.seen.append(head)

    def __enter__(self) -> HeadWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def latest_head_in(engine: Engine) -> Callable[[], ObservedHead | None]:
    """A fetch for :class:`HeadWatcher`: the latest head stored in that database."""
    query = (
        select(tree_heads.c.tree_size, tree_heads.c.root_hash)
        .order_by(tree_heads.c.tree_size.desc())
        .limit(1)
    )

    def fetch() -> ObservedHead | None:
        with engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ObservedHead(row.tree_size, bytes(row.root_hash))

    return fetch


@dataclass(frozen=True)
class LedgerAudit:
    records: int
    heads: int
    observed_heads: int
    consistency_proofs: int
    bundles_verified: int

    def summary(self) -> str:
        return (
            f"{self.records} records sealed once each in {self.heads} heads; "
            f"{self.consistency_proofs} consistency proofs verified "
            f"({self.observed_heads} heads observed), {self.bundles_verified} bundles verified"
        )


class _LeafNodes:
    """The read side of a log rebuilt from its leaf hashes alone (no stored inner node): the
    same :class:`LedgerReader` then serves proofs that owe nothing to ``ledger_nodes``."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaves = leaf_hashes
        self.memo: dict[NodeId, bytes] = {}

    def state(self) -> LogState:
        return LogState(len(self.leaves), b"", (), None)

    def _node(self, level: int, index: int) -> bytes:
        if level == 0:
            return self.leaves[index]
        found = self.memo.get((level, index))
        if found is None:
            left = self._node(level - 1, 2 * index)
            found = merkle.node_hash(left, self._node(level - 1, 2 * index + 1))
            self.memo[(level, index)] = found
        return found

    def nodes(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        return {(level, index): self._node(level, index) for level, index in ids}


def _prefix_roots(leaf_hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """MTH of ``leaf_hashes[:size]`` for each size, by growing one frontier."""
    roots: dict[int, bytes] = {}
    frontier: tuple[bytes, ...] = ()
    done = 0
    for size in sorted(set(sizes)):
        appended, _ = merkle.append(frontier, done, list(leaf_hashes[done:size]))
        frontier, done = tuple(appended), size
        roots[size] = merkle.root_from_frontier(frontier)
    return roots


def _signed_heads(conn: Connection) -> list[SignedTreeHead]:
    """Every stored head, read in two queries (the ledger's own reader reads one at a time)."""
    pems = dict(conn.execute(select(x509_certificates.c.sha256, x509_certificates.c.pem)).all())
    h = tree_heads.c
    rows = conn.execute(
        select(
            h.checkpoint, h.signature, h.signature_algorithm, h.timestamp_token, h.seal_chain
        ).order_by(h.tree_size)
    )
    return [
        SignedTreeHead(
            checkpoint=Checkpoint.parse(row.checkpoint),
            signature=bytes(row.signature),
            signature_algorithm=row.signature_algorithm,
            timestamp_token=bytes(row.timestamp_token),
            seal_chain_pem=tuple(pems[i] for i in json.loads(row.seal_chain)),
        )
        for row in rows
    ]


def audit_ledger(
    database_url: str,
    trust_roots: Sequence[x509.Certificate],
    observed: Iterable[ObservedHead] = (),
    *,
    served_bundles: int = 10,
) -> LedgerAudit:
    """Check the whole ledger (see the module docstring); raises AssertionError on a fault.

    Call it once nothing is pending any more (every record sealed).  The bundle under each
    head is built from what was read; ``served_bundles`` of them, spread over the log, are
    also fetched the way the API serves them."""
    engine = make_engine(database_url)  # pooled: the audit makes many queries
    try:
        served = LedgerReader(SqlLogStorage(engine))
        r = evidence_records.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(r.id, r.tenant_id, r.canonical, r.leaf_hash, r.leaf_index).order_by(
                    r.leaf_index
                )
            ).all()
            heads = _signed_heads(conn)
        unsealed = [row.id for row in rows if row.leaf_index is None]
        assert not unsealed, f"{len(unsealed)} records never sealed, e.g. {unsealed[:3]}"
        indexes = [row.leaf_index for row in rows]
        assert indexes == list(range(len(rows))), "gaps or repeated positions in the log"
        leaf_hashes = [bytes(row.leaf_hash) for row in rows]
        for row, leaf in zip(rows, leaf_hashes, strict=True):
            assert leaf == merkle.leaf_hash(bytes(row.canonical)), f"leaf {row.leaf_index}"
        assert len(set(leaf_hashes)) == len(rows), "a record is in the log twice"

        assert heads, "no tree head at all"
        sizes = [h.tree_size for h in heads]
        times = [h.checkpoint.time for h in heads]
        assert sizes == sorted(set(sizes)), "head sizes do not grow"
        assert times == sorted(set(times)), "head times do not move forward"
        assert sizes[-1] == len(rows), f"latest head {sizes[-1]} != {len(rows)} records"

        seen = list(observed)
        roots = _prefix_roots(leaf_hashes, [*sizes, *(o.tree_size for o in seen)])
        for head in heads:  # each stored head is a prefix of the one final log
            assert head.root_hash == roots[head.tree_size], f"fork at {head.tree_size}"
        stored_roots = {h.tree_size: h.root_hash for h in heads}
        for observed_head in seen:
            size = observed_head.tree_size
            assert size in stored_roots, f"observed head {size} is not stored"
            assert observed_head.root_hash == roots[size], f"fork at {size}"

        proofs = 0
        for old, new in itertools.pairwise(heads):  # as the server serves them
            proof = served.consistency_proof(old.tree_size, new.tree_size)
            merkle.verify_consistency(
                old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof
            )
            proofs += 1
        rebuilt = LedgerReader(_LeafNodes(leaf_hashes))  # type: ignore[arg-type]
        distinct = sorted({(o.tree_size, o.root_hash) for o in seen})
        for (old_size, old_root), (new_size, new_root) in itertools.combinations(distinct, 2):
            if old_size == new_size:
                raise AssertionError(f"two roots for size {old_size}: a fork")
            proof = rebuilt.consistency_proof(old_size, new_size)
            merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
            proofs += 1

        bundles = []  # under every head, the first record it sealed: signed and timestamped?
        previous = 0
        for head in heads:
            first = rows[previous]
            record = StoredRecord(
                first.id, first.tenant_id, bytes(first.canonical), leaf_hashes[previous], previous
            )
            proof = rebuilt.inclusion_proof(previous, head.tree_size)
            bundles.append(build_bundle(record, head, proof))
            previous = head.tree_size
        step = max(1, len(rows) // max(served_bundles, 1))
        for row in rows[::step][:served_bundles]:
            bundles.append(served.bundle(row.id, row.tenant_id))
        for bundle in bundles:
            report = verify_bundle(bundle, trust_roots=list(trust_roots))
            assert report.ok, [c for c in report.checks if not c.ok]
        return LedgerAudit(len(rows), len(heads), len(distinct), proofs, len(bundles))
    finally:
        engine.dispose()
