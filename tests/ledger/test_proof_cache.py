"""Proofs served from the per-process cache of subtree hashes stay correct while the log grows.

A cached hash is a complete subtree's: it can never change (RFC 9162 §2.1.1), so the cache may
only ever save queries, never serve a proof that fails to verify.
"""

from __future__ import annotations

import pytest

from sealpost.app import Sealpost
from sealpost.errors import InvalidInput
from sealpost.ledger import merkle
from sealpost.ledger.merkle import NodeId
from sealpost.ledger.proofs import LedgerReader, NodeCache
from sealpost.ledger.storage import LogStorage
from tests.support.records import submission


class CountingStorage:
    """The real storage, counting the node queries the reader makes."""

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.node_queries = 0
        self.state_queries = 0

    def nodes(self, ids: object) -> dict[NodeId, bytes]:
        self.node_queries += 1
        return self.storage.nodes(ids)  # type: ignore[arg-type]

    def state(self) -> object:
        self.state_queries += 1
        return self.storage.state()

    def __getattr__(self, name: str) -> object:
        return getattr(self.storage, name)


def _seal(sealpost: Sealpost, tenant_id: str, count: int, start: int) -> list[bytes]:
    records = [submission(tenant_id, start + i) for i in range(count)]
    sealpost.log_storage.append(records)
    assert sealpost.sequencer.seal_pending() is not None
    return [r.leaf_hash() for r in records]


def test_proofs_stay_valid_as_the_tree_grows_past_tiles_with_a_tiny_cache(
    sealpost: Sealpost, tenant_id: str
) -> None:
    counting = CountingStorage(sealpost.log_storage)
    reader = LedgerReader(counting, NodeCache(capacity=64))  # type: ignore[arg-type]
    leaves: list[bytes] = []
    for count in (3, 250, 9, 300):  # the first tile fills in the middle of a batch
        leaves += _seal(sealpost, tenant_id, count, len(leaves))
        head = sealpost.log_storage.head()
        assert head is not None and head.tree_size == len(leaves)
        for index in range(0, len(leaves), 7):
            proof = reader.inclusion_proof(index, head.tree_size)
            merkle.verify_inclusion(leaves[index], index, head.tree_size, proof, head.root_hash)
        for old in (1, 3, 253, 256, 262):
            if old <= head.tree_size:
                old_head = sealpost.log_storage.head(old)
                if old_head is not None:
                    merkle.verify_consistency(
                        old,
                        head.tree_size,
                        old_head.root_hash,
                        head.root_hash,
                        reader.consistency_proof(old, head.tree_size),
                    )
    assert len(reader.cache._hashes) <= 64


def test_a_neighbours_proof_needs_no_query_and_a_known_size_is_not_asked_again(
    sealpost: Sealpost, tenant_id: str
) -> None:
    leaves = _seal(sealpost, tenant_id, 600, 0)
    head = sealpost.log_storage.head()
    assert head is not None
    counting = CountingStorage(sealpost.log_storage)
    reader = LedgerReader(counting)  # type: ignore[arg-type]
    first = reader.inclusion_proof(300, head.tree_size)
    assert (counting.node_queries, counting.state_queries) == (1, 1)
    for index in range(256, 512):  # the same tile: its hashes came with the first proof
        proof = reader.inclusion_proof(index, head.tree_size)
        merkle.verify_inclusion(leaves[index], index, head.tree_size, proof, head.root_hash)
    assert (counting.node_queries, counting.state_queries) == (1, 1)
    assert first == sealpost.ledger.inclusion_proof(300, head.tree_size)


def test_a_size_beyond_the_latest_head_is_still_refused(sealpost: Sealpost, tenant_id: str) -> None:
    _seal(sealpost, tenant_id, 10, 0)
    reader = sealpost.ledger
    reader.inclusion_proof(2, 10)
    with pytest.raises(InvalidInput, match="larger than the latest head"):
        reader.inclusion_proof(2, 11)
