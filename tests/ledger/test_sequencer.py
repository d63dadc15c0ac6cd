"""The sequencer and the SQL log storage together, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sealpost.app import Sealpost
from sealpost.ledger import merkle
from sealpost.ledger.errors import SequencerError
from sealpost.ledger.sequencer import Sequencer
from tests.support.records import submission


def test_batches_are_sealed_into_signed_heads_whose_roots_match_the_records(
    sealpost: Sealpost, tenant_id: str
) -> None:
    storage = sealpost.log_storage
    records = [submission(tenant_id, i) for i in range(37)]
    storage.append(records[:20])
    first = sealpost.sequencer.seal_pending()
    storage.append(records[20:])
    second = sealpost.sequencer.seal_pending()

    assert first is not None and second is not None
    assert (first.tree_size, second.tree_size) == (20, 37)
    assert second.root_hash == merkle.root_from_leaf_hashes([r.leaf_hash() for r in records])
    assert sealpost.sequencer.seal_pending() is None
    assert storage.pending_count() == 0
    assert second.checkpoint.time > first.checkpoint.time
    assert storage.head(20) == first and storage.head() == second


def test_every_record_has_an_inclusion_proof_against_its_head_and_the_latest(
    sealpost: Sealpost, tenant_id: str
) -> None:
    records = [submission(tenant_id, i) for i in range(50)]
    for chunk in (records[:7], records[7:8], records[8:33], records[33:]):
        sealpost.log_storage.append(chunk)
        sealpost.sequencer.seal_pending()
    latest = sealpost.log_storage.head()
    assert latest is not None and latest.tree_size == 50
    for record in records:
        stored, head = sealpost.ledger.sealed_record(record.id, tenant_id)
        assert stored.leaf_index is not None
        for target in (head, latest):
            proof = sealpost.ledger.inclusion_proof(stored.leaf_index, target.tree_size)
            merkle.verify_inclusion(
                record.leaf_hash(), stored.leaf_index, target.tree_size, proof, target.root_hash
            )


def test_consistency_proofs_link_every_pair_of_heads(sealpost: Sealpost, tenant_id: str) -> None:
    heads = []
    for size in (1, 2, 5, 8, 9, 16, 3):
        sealpost.log_storage.append([submission(tenant_id, i) for i in range(size)])
        head = sealpost.sequencer.seal_pending()
        assert head is not None
        heads.append(head)
    for old in heads:
        for new in heads:
            if old.tree_size <= new.tree_size:
                proof = sealpost.ledger.consistency_proof(old.tree_size, new.tree_size)
                merkle.verify_consistency(
                    old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof
                )
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            heads[1].tree_size,
            heads[2].tree_size,
            heads[0].root_hash,
            heads[2].root_hash,
            sealpost.ledger.consistency_proof(heads[1].tree_size, heads[2].tree_size),
        )


def test_a_head_whose_time_does_not_move_forward_is_refused(
    sealpost: Sealpost, tenant_id: str
) -> None:
    sealpost.log_storage.append([submission(tenant_id)])
    head = sealpost.sequencer.seal_pending()
    assert head is not None
    frozen = Sequencer(
        sealpost.log_storage, sealpost.sequencer.sealer, clock=lambda: head.checkpoint.time
    )
    sealpost.log_storage.append([submission(tenant_id, 1)])
    with pytest.raises(SequencerError, match="time must move forward"):
        frozen.seal_pending()
    earlier = Sequencer(
        sealpost.log_storage,
        sealpost.sequencer.sealer,
        clock=lambda: head.checkpoint.time - timedelta(minutes=5),
    )
    with pytest.raises(SequencerError):
        earlier.seal_pending()
    assert sealpost.log_storage.state().tree_size == 1
    assert sealpost.log_storage.pending_count() == 1


def test_two_sequencers_racing_for_the_same_batch_seal_it_once(
    sealpost: Sealpost, tenant_id: str
) -> None:
    """The compare-and-set on the tree size fences a sequencer whose lease ran out."""
    storage = sealpost.log_storage
    storage.append([submission(tenant_id, i) for i in range(10)])
    state, pending = storage.state(), storage.pending(100)
    frontier, nodes = merkle.append(state.frontier, 0, [p.leaf_hash for p in pending])
    root = merkle.root_from_frontier(frontier)

    winner = sealpost.sequencer.seal_pending()  # the other sequencer commits first
    assert winner is not None and winner.root_hash == root

    late_head = sealpost.sequencer.sealer.seal_head(10, root, winner.checkpoint.time)
    with pytest.raises(SequencerError):
        storage.integrate(
            expected_size=0,
            leaves=pending,
            nodes=[n for n in nodes if n[0] > 0],
            frontier=frontier,
            head=late_head,
        )
    assert storage.state().tree_size == 10
    assert storage.head() == winner


def test_a_crash_between_signing_and_committing_leaves_the_records_pending(
    sealpost: Sealpost, tenant_id: str
) -> None:
    storage = sealpost.log_storage
    records = [submission(tenant_id, i) for i in range(5)]
    storage.append(records)

    class Crash(Exception):
        pass

    def crashing_integrate(**_kwargs: object) -> None:
        raise Crash

    original = storage.integrate
    storage.integrate = crashing_integrate  # type: ignore[method-assign]
    with pytest.raises(Crash):
        sealpost.sequencer.seal_pending()
    storage.integrate = original  # type: ignore[method-assign]

    assert storage.state().tree_size == 0 and storage.pending_count() == 5
    head = sealpost.sequencer.seal_pending()
    assert head is not None and head.tree_size == 5
    assert head.root_hash == merkle.root_from_leaf_hashes([r.leaf_hash() for r in records])


def test_the_lease_admits_one_sequencer_at_a_time(sealpost: Sealpost) -> None:
    storage = sealpost.log_storage
    assert storage.acquire_lease("a", 30)
    assert not storage.acquire_lease("b", 30)
    assert storage.acquire_lease("a", 30)  # renewal
    storage.release_lease("a")
    assert storage.acquire_lease("b", 30)
    assert not storage.acquire_lease("a", 30)
