"""The ``LogStorage`` conformance suite: every backend must pass every test here.

One suite, parametrised over backends by the ``backend`` fixture: today the SQL backend on
SQLite and on the real PostgreSQL.  Another backend is one more entry in ``BACKENDS``: a
function that yields a :class:`LogBackend` over a fresh, empty log.  Each test checks a
promise written on a ``LogStorage`` method (``sealpost.ledger.storage``), with real records,
real Merkle nodes and real signed, timestamped heads.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import IntegrityError

from sealpost.db import migrate
from sealpost.db.engine import make_engine
from sealpost.ledger import merkle
from sealpost.ledger.errors import SequencerError
from sealpost.ledger.note import NoteSigner
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import SqlLogStorage
from sealpost.ledger.sequencer import HeadSealer, Sequencer
from sealpost.ledger.storage import LogState, LogStorage, PendingLeaf
from sealpost.ledger.timestamps import TimeStamper
from sealpost.ledger.tree_head import SignedTreeHead
from sealpost.pki.keys import LocalIdentities
from sealpost.tenants.repository import TenantRepository
from tests.support.records import submission


@dataclass(frozen=True)
class LogBackend:
    storage: LogStorage
    tenant_id: str
    """A tenant the backend accepts records of."""
    reopen: Callable[[], LogStorage]
    """A second, independent handle on the same log (another connection, as another process)."""
    duplicate_error: type[Exception]
    """What ``append`` raises for a record id already stored."""


def _sql_backend(url: str) -> Iterator[LogBackend]:
    engines = [make_engine(url)]
    migrate.upgrade(engines[0])
    tenant_id = TenantRepository(engines[0]).create("conformance").id

    def reopen() -> LogStorage:
        engines.append(make_engine(url))
        return SqlLogStorage(engines[-1])

    try:
        yield LogBackend(SqlLogStorage(engines[0]), tenant_id, reopen, IntegrityError)
    finally:
        for engine in engines:
            engine.dispose()


def _sql_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogBackend]:
    yield from _sql_backend(f"sqlite:///{tmp_path / 'ledger.db'}")


def _sql_postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogBackend]:
    yield from _sql_backend(request.getfixturevalue("postgres_schema_url"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[LogBackend]]] = {
    "sql-sqlite": _sql_sqlite,
    "sql-postgresql": _sql_postgresql,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogBackend]:
    """A fresh, empty log on each backend in turn."""
    yield from BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def storage(backend: LogBackend) -> LogStorage:
    return backend.storage


@pytest.fixture
def sealer(identities: LocalIdentities, timestamper: TimeStamper) -> HeadSealer:
    return HeadSealer("conformance.sealpost.test/ledger", identities.seal, timestamper)


class Batch(TypedDict):
    """The keyword arguments of ``LogStorage.integrate``."""

    expected_size: int
    leaves: list[PendingLeaf]
    nodes: list[tuple[int, int, bytes]]
    frontier: list[bytes]
    head: SignedTreeHead


class Batches:
    """Builds ``integrate`` arguments the way the sequencer does, with real signed heads."""

    def __init__(self, sealer: HeadSealer) -> None:
        self.sealer = sealer
        self.clock = datetime.now(UTC).replace(microsecond=0)

    def prepare(self, state: LogState, leaves: Sequence[PendingLeaf]) -> Batch:
        frontier, created = merkle.append(
            state.frontier, state.tree_size, [leaf.leaf_hash for leaf in leaves]
        )
        self.clock += timedelta(seconds=1)
        head = self.sealer.seal_head(
            state.tree_size + len(leaves), merkle.root_from_frontier(frontier), self.clock
        )
        return {
            "expected_size": state.tree_size,
            "leaves": list(leaves),
            "nodes": [node for node in created if node[0] > 0],
            "frontier": frontier,
            "head": head,
        }

    def seal(self, storage: LogStorage, count: int) -> SignedTreeHead:
        """Integrate the ``count`` oldest pending records; returns their head."""
        batch = self.prepare(storage.state(), storage.pending(count))
        storage.integrate(**batch)
        return batch["head"]


@pytest.fixture
def batches(sealer: HeadSealer) -> Batches:
    return Batches(sealer)


def records(backend: LogBackend, count: int, start: int = 0) -> list[EvidenceRecord]:
    return [submission(backend.tenant_id, n) for n in range(start, start + count)]


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root by the recursive definition, independent of the frontier code."""
    return merkle.root_from_leaf_hashes(leaf_hashes)


def subtree(leaf_hashes: Sequence[bytes], level: int, index: int) -> bytes:
    return mth(leaf_hashes[index << level : (index + 1) << level])


def leaf_indices(storage: LogStorage, appended: Sequence[EvidenceRecord]) -> list[int | None]:
    stored = [storage.record(r.id) for r in appended]
    return [s.leaf_index if s is not None else -1 for s in stored]


def snapshot(storage: LogStorage, ids: Sequence[str]) -> tuple[object, ...]:
    """Everything a failed ``integrate`` must leave as it was."""
    return (
        storage.state(),
        storage.pending(1000),
        storage.pending_count(),
        storage.head(),
        [storage.record(i) for i in ids],
    )


# -- append, pending, pending_count ----------------------------------------------------------


def test_append_is_durable_and_pending_in_arrival_order(backend: LogBackend) -> None:
    storage = backend.storage
    appended = records(backend, 7)
    storage.append(appended[:3])
    storage.append(appended[3:4])
    storage.append([])  # a no-op
    storage.append(appended[4:])

    other = backend.reopen()  # durable: another handle sees everything at once
    for view in (storage, other):
        pending = view.pending(100)
        assert [p.record_id for p in pending] == [r.id for r in appended]
        assert [p.leaf_hash for p in pending] == [r.leaf_hash() for r in appended]
        assert [p.seq for p in pending] == sorted({p.seq for p in pending})
        assert view.pending_count() == 7
        stored = view.record(appended[4].id)
        assert stored is not None
        assert (stored.record_id, stored.tenant_id) == (appended[4].id, backend.tenant_id)
        assert stored.canonical == appended[4].canonical()
        assert stored.leaf_hash == merkle.leaf_hash(appended[4].canonical())
        assert stored.leaf_index is None
    assert storage.state().tree_size == 0  # appending seals nothing


def test_append_stores_all_of_its_records_or_none(backend: LogBackend) -> None:
    storage = backend.storage
    first, fresh = records(backend, 2)
    storage.append([first])
    with pytest.raises(backend.duplicate_error):
        storage.append([fresh, first])
    assert storage.record(fresh.id) is None
    assert [p.record_id for p in storage.pending(10)] == [first.id]
    assert storage.pending_count() == 1


def test_the_empty_log_has_size_zero_and_the_rfc_9162_empty_root(storage: LogStorage) -> None:
    state = storage.state()
    assert state.tree_size == 0
    assert state.root_hash == hashlib.sha256(b"").digest()
    assert state.frontier == ()
    assert state.head_time is None
    assert storage.pending(10) == []
    assert storage.pending_count() == 0
    assert storage.head() is None
    assert storage.head(0) is None
    assert storage.head_covering(0) is None
    assert storage.nodes([(0, 0), (1, 0)]) == {}


def test_pending_is_oldest_first_and_limited(backend: LogBackend, batches: Batches) -> None:
    storage = backend.storage
    appended = records(backend, 6)
    for record in appended:
        storage.append([record])
    ids = [r.id for r in appended]
    assert [p.record_id for p in storage.pending(2)] == ids[:2]
    assert [p.record_id for p in storage.pending(6)] == ids
    assert [p.record_id for p in storage.pending(100)] == ids
    assert storage.pending(0) == []
    assert storage.pending_count() == 6
    oldest = storage.oldest_pending_time()
    assert oldest is not None and oldest.tzinfo is not None
    assert abs((datetime.now(UTC) - oldest).total_seconds()) < 60

    batches.seal(storage, 4)
    assert [p.record_id for p in storage.pending(100)] == ids[4:]
    assert [p.record_id for p in storage.pending(1)] == ids[4:5]
    assert storage.pending_count() == 2
    storage.append(records(backend, 1, start=6))
    assert storage.pending_count() == 3
    batches.seal(storage, 3)
    assert storage.pending(100) == []
    assert storage.pending_count() == 0
    assert storage.oldest_pending_time() is None


# -- integrate ----------------------------------------------------------------------------------


def test_integrate_assigns_indices_and_stores_nodes_head_and_state(
    backend: LogBackend, batches: Batches
) -> None:
    storage = backend.storage
    appended = records(backend, 7)
    storage.append(appended)
    hashes = [r.leaf_hash() for r in appended]

    first = batches.seal(storage, 3)
    assert leaf_indices(storage, appended) == [0, 1, 2, None, None, None, None]
    state = storage.state()
    assert (state.tree_size, state.root_hash) == (3, mth(hashes[:3]))
    assert state.frontier == (subtree(hashes, 1, 0), hashes[2])
    assert state.head_time == first.checkpoint.time
    assert storage.head(3) == first

    second = batches.seal(storage, 4)
    assert leaf_indices(storage, appended) == list(range(7))
    state = storage.state()
    assert (state.tree_size, state.root_hash) == (7, mth(hashes)) == (7, second.root_hash)
    assert state.frontier == tuple(subtree(hashes, lv, ix) for lv, ix in merkle.decompose(0, 7))
    assert state.head_time == second.checkpoint.time
    assert storage.head(7) == second

    complete = [(lv, ix) for lv in range(3) for ix in range(7 >> lv)]
    assert storage.nodes(complete) == {(lv, ix): subtree(hashes, lv, ix) for lv, ix in complete}


def test_nodes_leave_out_what_the_integrated_tree_does_not_hold(
    backend: LogBackend, batches: Batches
) -> None:
    storage = backend.storage
    appended = records(backend, 6)
    storage.append(appended)
    batches.seal(storage, 5)  # leaf 5 stays pending
    hashes = [r.leaf_hash() for r in appended]
    found = storage.nodes([(0, 4), (0, 5), (0, 6), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)])
    assert found == {(0, 4): hashes[4], (1, 1): subtree(hashes, 1, 1), (2, 0): mth(hashes[:4])}
    assert storage.nodes([]) == {}


def test_a_head_of_the_wrong_size_is_refused_and_nothing_written(
    backend: LogBackend, batches: Batches
) -> None:
    storage = backend.storage
    appended = records(backend, 3)
    storage.append(appended)
    batch = batches.prepare(storage.state(), storage.pending(3))
    batch["head"] = batches.prepare(storage.state(), storage.pending(2))["head"]
    before = snapshot(storage, [r.id for r in appended])
    with pytest.raises(SequencerError):
        storage.integrate(**batch)
    assert snapshot(storage, [r.id for r in appended]) == before
    assert storage.head(2) is None and storage.head(3) is None


@pytest.mark.parametrize("case", ["behind", "ahead"])
def test_integrate_with_a_stale_expected_size_raises_and_writes_nothing(
    backend: LogBackend, batches: Batches, case: str
) -> None:
    storage = backend.storage
    appended = records(backend, 5)
    storage.append(appended)
    ids = [r.id for r in appended]
    first_read = storage.state(), storage.pending(100)
    batches.seal(storage, 3)  # the winner
    if case == "behind":  # a sequencer that read the empty tree and all five records lost
        batch = batches.prepare(*first_read)
    else:  # a batch that claims a tree larger than the stored one
        state = storage.state()
        ahead = LogState(4, state.root_hash, state.frontier[:1], None)  # never stored
        batch = batches.prepare(ahead, storage.pending(100))
    new_nodes = {(lv, ix) for lv, ix, _ in batch["nodes"]}
    held_before = storage.nodes(new_nodes)
    before = snapshot(storage, ids)

    with pytest.raises(SequencerError):
        storage.integrate(**batch)

    assert snapshot(storage, ids) == before
    assert storage.state().tree_size == 3
    assert [p.record_id for p in storage.pending(100)] == ids[3:]
    assert storage.head(batch["head"].tree_size) is None
    assert storage.nodes(new_nodes) == held_before


@pytest.mark.parametrize("case", ["integrated", "integrated-after-a-pending-one", "twice"])
def test_integrating_a_leaf_again_raises_and_writes_nothing(
    backend: LogBackend, batches: Batches, case: str
) -> None:
    storage = backend.storage
    appended = records(backend, 5)
    storage.append(appended)
    ids = [r.id for r in appended]
    sealed = storage.pending(3)
    batches.seal(storage, 3)
    waiting = storage.pending(100)
    leaves = {
        "integrated": [sealed[1]],
        "integrated-after-a-pending-one": [waiting[0], sealed[2]],
        "twice": [waiting[0], waiting[0]],
    }[case]
    batch = batches.prepare(storage.state(), leaves)
    new_nodes = {(lv, ix) for lv, ix, _ in batch["nodes"]}
    assert storage.nodes(new_nodes) == {}
    before = snapshot(storage, ids)

    with pytest.raises(SequencerError):
        storage.integrate(**batch)

    assert snapshot(storage, ids) == before
    assert [p.record_id for p in storage.pending(100)] == ids[3:]
    assert storage.head(batch["head"].tree_size) is None
    assert storage.nodes(new_nodes) == {}


# -- the lease --------------------------------------------------------------------------------


def test_the_lease_is_refused_to_another_holder_while_live(storage: LogStorage) -> None:
    assert storage.acquire_lease("a", 30)
    assert not storage.acquire_lease("b", 30)
    assert storage.acquire_lease("a", 30)  # renewal by the holder
    assert not storage.acquire_lease("b", 30)
    storage.release_lease("b")  # not b's to release
    assert not storage.acquire_lease("b", 30)
    storage.release_lease("a")
    assert storage.acquire_lease("b", 30)  # at once after a release
    assert not storage.acquire_lease("a", 30)
    storage.release_lease("nobody")  # no effect, no error
    assert not storage.acquire_lease("a", 30)


def test_an_expired_lease_is_taken_and_a_renewal_extends_it(storage: LogStorage) -> None:
    assert storage.acquire_lease("a", 0.2)
    assert storage.acquire_lease("a", 30)  # the renewal outlives the first term
    time.sleep(0.3)
    assert not storage.acquire_lease("b", 30)

    storage.release_lease("a")
    assert storage.acquire_lease("b", 0.2)
    time.sleep(0.3)
    assert storage.acquire_lease("a", 30)  # b's lease expired
    assert not storage.acquire_lease("b", 30)  # and b lost it


# -- readers --------------------------------------------------------------------------------


def test_head_by_size_and_latest(backend: LogBackend, batches: Batches) -> None:
    storage = backend.storage
    storage.append(records(backend, 5))
    first = batches.seal(storage, 3)
    second = batches.seal(storage, 2)
    other = backend.reopen()
    for view in (storage, other):
        assert view.head(3) == first
        assert view.head(5) == second
        assert view.head() == second
        for never_sealed in (0, 1, 4, 6):
            assert view.head(never_sealed) is None
    stored = other.head(3)
    assert stored is not None
    assert stored.checkpoint == first.checkpoint
    assert stored.seal_chain_pem == first.seal_chain_pem
    assert stored.timestamp_token == first.timestamp_token


def test_note_key_id_is_that_of_the_latest_head_signed_as_a_note(
    backend: LogBackend, sealer: HeadSealer
) -> None:
    storage = backend.storage
    assert storage.note_key_id() is None  # a fresh log
    storage.append(records(backend, 4))
    batches = Batches(sealer)
    batches.seal(storage, 1)  # a head from before signed notes: none
    assert storage.note_key_id() is None
    for _ in range(2):
        signer = NoteSigner(sealer.origin, Ed25519PrivateKey.generate())
        batches.sealer = replace(sealer, note_signer=signer)
        batches.seal(storage, 1)
        for view in (storage, backend.reopen()):
            assert view.note_key_id() == signer.verifier.key_id


def test_head_covering_is_the_first_head_that_sealed_the_leaf(
    backend: LogBackend, batches: Batches
) -> None:
    storage = backend.storage
    storage.append(records(backend, 9))
    heads = [batches.seal(storage, n) for n in (3, 2, 3)]  # sizes 3, 5, 8
    expected = [heads[0]] * 3 + [heads[1]] * 2 + [heads[2]] * 3
    assert [storage.head_covering(i) for i in range(8)] == expected
    assert storage.head_covering(8) is None  # leaf 8 is still pending
    assert storage.head_covering(100) is None


def test_record_by_id_integrated_or_not(backend: LogBackend, batches: Batches) -> None:
    storage = backend.storage
    appended = records(backend, 3)
    storage.append(appended)
    batches.seal(storage, 2)
    for index, record in enumerate(appended):
        stored = storage.record(record.id)
        assert stored is not None
        assert stored.record_id == record.id
        assert stored.tenant_id == backend.tenant_id
        assert stored.canonical == record.canonical()
        assert stored.leaf_hash == record.leaf_hash()
        assert stored.leaf_index == (index if index < 2 else None)
    assert storage.record(records(backend, 1)[0].id) is None
    assert storage.record("") is None


# -- with the real sequencer ------------------------------------------------------------------


def test_a_sequencer_over_the_backend_seals_batches_whose_proofs_verify(
    backend: LogBackend, sealer: HeadSealer
) -> None:
    storage = backend.storage
    sequencer = Sequencer(storage, sealer, max_batch=200)
    appended: list[EvidenceRecord] = []
    heads: list[SignedTreeHead] = []
    for size in (1, 2, 5, 16, 3):
        chunk = records(backend, size, start=len(appended))
        storage.append(chunk)
        appended += chunk
        head = sequencer.seal_pending()
        assert head is not None
        heads.append(head)
    chunk = records(backend, 450, start=len(appended))  # more than one batch of 200
    storage.append(chunk)
    appended += chunk
    heads += sequencer.seal_all()
    assert [h.tree_size for h in heads] == [1, 3, 8, 24, 27, 227, 427, 477]
    assert sequencer.seal_pending() is None and storage.pending_count() == 0

    hashes = [r.leaf_hash() for r in appended]
    for head in heads:
        assert storage.head(head.tree_size) == head
        assert head.root_hash == mth(hashes[: head.tree_size])
    leaves = {(0, index): leaf for index, leaf in enumerate(hashes)}
    assert storage.nodes(iter(leaves)) == leaves  # any number of ids, as an iterable
    scattered = [i for i in range(477) if i % 2 or 100 <= i < 130 or i > 470] + [477, 999]
    assert storage.nodes((0, i) for i in scattered) == {
        (0, i): hashes[i] for i in scattered if i < 477
    }  # lone indexes and runs, beyond the tree too
    inner = [(1, i) for i in range(0, 238, 3)] + [(1, i) for i in range(200, 240)] + [(2, 119)]
    assert storage.nodes(inner) == {
        (lv, ix): subtree(hashes, lv, ix) for lv, ix in inner if (ix + 1) << lv <= 477
    }

    reader = LedgerReader(backend.reopen())
    latest = heads[-1]
    edges = {0} | {h.tree_size - 1 for h in heads} | {h.tree_size for h in heads[:-1]}
    for index in sorted(edges | set(range(0, len(appended), 23))):
        stored = storage.record(appended[index].id)
        assert stored is not None and stored.leaf_index == index
        sealing = storage.head_covering(index)
        assert sealing is not None
        for target in (sealing, latest):
            proof = reader.inclusion_proof(index, target.tree_size)
            merkle.verify_inclusion(hashes[index], index, target.tree_size, proof, target.root_hash)
    for old in heads:
        for new in heads:
            if old.tree_size <= new.tree_size:
                proof = reader.consistency_proof(old.tree_size, new.tree_size)
                merkle.verify_consistency(
                    old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof
                )


def test_pending_count_is_bounded_by_its_cap(backend: LogBackend) -> None:
    """Metrics, /healthz and the sequencer count a backlog that may reach millions during a
    TSA outage: with a cap, the count stops there (a bounded query), without, it is exact."""
    storage = backend.storage
    storage.append(records(backend, 7))
    assert storage.pending_count() == 7
    assert storage.pending_count(5) == 5
    assert storage.pending_count(100) == 7
