"""Serving proofs from storage: inclusion and consistency proofs, and evidence bundles.

Every process can do this (it only reads); the plans come from the pure ``merkle`` module and
each proof hash is the fold of the complete subtrees the storage holds, fetched in one query.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from sealpost.errors import InvalidInput, NotFound
from sealpost.ledger import merkle
from sealpost.ledger.bundle import build_bundle
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.merkle import NodeId
from sealpost.ledger.storage import LogStorage, StoredRecord
from sealpost.ledger.tree_head import SignedTreeHead

TILE_HEIGHT = 8
"""Levels a tile spans (C2SP tlog-tiles: 256 hashes wide).  A proof's lowest eight hashes lie
in one tile; its neighbours' proofs (a communication's records are adjacent leaves) need them."""

NODE_CACHE_SIZE = 262_144
"""Hashes kept per process (about 40 MiB when full): enough for the tiles a busy API serves."""


class NodeCache:
    """A bounded LRU of complete subtrees' hashes.

    A stored node is the root of a complete subtree of an append-only log, so its hash never
    changes (RFC 9162 §2.1.1): caching it can never serve a stale proof, only a missing one.
    """

    def __init__(self, capacity: int = NODE_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._hashes: OrderedDict[NodeId, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        found: dict[NodeId, bytes] = {}
        with self._lock:
            for node in ids:
                value = self._hashes.get(node)
                if value is not None:
                    self._hashes.move_to_end(node)
                    found[node] = value
        return found

    def put_many(self, hashes: dict[NodeId, bytes]) -> None:
        with self._lock:
            self._hashes.update(hashes)
            for node in hashes:
                self._hashes.move_to_end(node)
            while len(self._hashes) > self.capacity:
                self._hashes.popitem(last=False)


def _tile_mates(node: NodeId, tree_size: int) -> Iterable[NodeId]:
    """The complete nodes at ``node``'s level in the same 256-leaf tile (itself included)."""
    level, idx = node
    span = 1 << (TILE_HEIGHT - level)
    first = idx - idx % span
    last = min(first + span, tree_size >> level)  # complete subtrees only
    return ((level, j) for j in range(first, last))


class LedgerReader:
    """Read side of the ledger.

    Proof hashes come from a per-process cache of immutable subtree hashes; a miss fetches the
    whole tile row the node lies in, one query for all of a proof's misses.
    """

    def __init__(self, storage: LogStorage, cache: NodeCache | None = None) -> None:
        self.storage = storage
        self.cache = cache if cache is not None else NodeCache()
        self._known_size = 0
        """The largest tree size seen in a head: the log only grows (RFC 9162 §2.1)."""

    def _nodes(self, wanted: set[NodeId], tree_size: int) -> dict[NodeId, bytes]:
        found = self.cache.get_many(wanted)
        missing = wanted - found.keys()
        if missing:
            fetch: set[NodeId] = set()
            for node in missing:
                if node[0] < TILE_HEIGHT:
                    fetch.update(_tile_mates(node, tree_size))
                fetch.add(node)
            fetched = self.storage.nodes(fetch)
            self.cache.put_many(fetched)
            found.update((node, fetched[node]) for node in missing if node in fetched)
        return found

    def _range_hashes(self, ranges: list[tuple[int, int]], tree_size: int) -> list[bytes]:
        decompositions = [merkle.decompose(begin, end) for begin, end in ranges]
        wanted = {node for nodes in decompositions for node in nodes}
        found = self._nodes(wanted, tree_size)
        missing = wanted - found.keys()
        if missing:
            raise RuntimeError(f"ledger storage lacks {len(missing)} nodes, e.g. {min(missing)}")
        return [merkle.fold([found[n] for n in nodes]) for nodes in decompositions]

    def _size_at_most_latest(self, tree_size: int) -> None:
        if tree_size <= self._known_size:
            return
        latest = self.storage.state().tree_size
        self._known_size = max(self._known_size, latest)
        if tree_size > latest:
            raise InvalidInput(f"tree size {tree_size} is larger than the latest head ({latest})")

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        if not 0 <= leaf_index < tree_size:
            raise InvalidInput(f"leaf {leaf_index} is not in a tree of size {tree_size}")
        self._size_at_most_latest(tree_size)
        return self._range_hashes(merkle.inclusion_proof_plan(leaf_index, tree_size), tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 < old_size <= new_size:
            raise InvalidInput("consistency proofs need 0 < from <= to")
        self._size_at_most_latest(new_size)
        return self._range_hashes(merkle.consistency_proof_plan(old_size, new_size), new_size)

    def sealed_record(self, record_id: str, tenant_id: str) -> tuple[StoredRecord, SignedTreeHead]:
        """The tenant's record and the head that sealed it; another tenant's id is NotFound."""
        record = self.storage.record(record_id)
        if record is None or record.tenant_id != tenant_id:
            raise NotFound(f"no evidence record {record_id}")
        head = None if record.leaf_index is None else self.storage.head_covering(record.leaf_index)
        if record.leaf_index is None or head is None:
            raise NotSealedYet(f"evidence record {record_id} is not sealed yet; retry in a second")
        return record, head

    def bundle(self, record_id: str, tenant_id: str) -> dict[str, object]:
        """The offline-verifiable evidence bundle of one record (docs/evidence-format.md)."""
        record, head = self.sealed_record(record_id, tenant_id)
        assert record.leaf_index is not None
        proof = self.inclusion_proof(record.leaf_index, head.tree_size)
        return build_bundle(record, head, proof)

    def bundles(
        self, record_ids: Sequence[str], tenant_id: str, wait: float = 0.0
    ) -> tuple[list[dict[str, object]], list[str]]:
        """The bundles of ``record_ids`` (a communication's or a process's timeline), in order,
        and the ids not sealed yet; waits up to ``wait`` s for the seal, fetching only what is
        still missing."""
        deadline = time.monotonic() + wait
        found: dict[str, dict[str, object]] = {}
        while True:
            pending = []
            for record_id in record_ids:
                if record_id in found:
                    continue
                try:
                    found[record_id] = self.bundle(record_id, tenant_id)
                except NotSealedYet:
                    pending.append(record_id)
            if not pending or time.monotonic() >= deadline:
                return [found[r] for r in record_ids if r in found], pending
            time.sleep(0.05)

    def head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The signed tree head of that size, or the latest (None before the first batch)."""
        return self.storage.head(tree_size)
