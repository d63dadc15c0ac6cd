"""Serving proofs from storage: inclusion and consistency proofs, and evidence bundles.

Every process can do this (it only reads); the plans come from the pure ``merkle`` module and
each proof hash is the fold of the complete subtrees the storage holds, fetched in one query.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sealpost.errors import InvalidInput, NotFound
from sealpost.ledger import merkle
from sealpost.ledger.bundle import build_bundle
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.storage import LogStorage, StoredRecord
from sealpost.ledger.tree_head import SignedTreeHead


class LedgerReader:
    """Read side of the ledger."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage

    def _range_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        decompositions = [merkle.decompose(begin, end) for begin, end in ranges]
        wanted = {node for nodes in decompositions for node in nodes}
        found = self.storage.nodes(wanted)
        missing = wanted - found.keys()
        if missing:
            raise RuntimeError(f"ledger storage lacks {len(missing)} nodes, e.g. {min(missing)}")
        return [merkle.fold([found[n] for n in nodes]) for nodes in decompositions]

    def _size_at_most_latest(self, tree_size: int) -> None:
        latest = self.storage.state().tree_size
        if tree_size > latest:
            raise InvalidInput(f"tree size {tree_size} is larger than the latest head ({latest})")

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> list[bytes]:
        if not 0 <= leaf_index < tree_size:
            raise InvalidInput(f"leaf {leaf_index} is not in a tree of size {tree_size}")
        self._size_at_most_latest(tree_size)
        return self._range_hashes(merkle.inclusion_proof_plan(leaf_index, tree_size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if not 0 < old_size <= new_size:
            raise InvalidInput("consistency proofs need 0 < from <= to")
        self._size_at_most_latest(new_size)
        return self._range_hashes(merkle.consistency_proof_plan(old_size, new_size))

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
