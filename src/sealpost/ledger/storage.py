"""The ledger's storage contract.

Modelled on Trillian: the Merkle maths and the sequencer live in ``ledger``; a backend only
stores rows and keeps its promises, listed on each method.  ``ledger.repository`` is the
SQL backend (SQLite and PostgreSQL); ``tests/ledger/test_storage_conformance.py`` is the suite
every backend must pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sealpost.ledger.merkle import NodeId
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.tree_head import SignedTreeHead


@dataclass(frozen=True)
class LogState:
    """What the sequencer needs to extend the tree: its size, root and right edge."""

    tree_size: int
    root_hash: bytes
    frontier: tuple[bytes, ...]
    """Hashes of ``merkle.decompose(0, tree_size)``, left to right."""
    head_time: datetime | None


@dataclass(frozen=True)
class PendingLeaf:
    """A committed record not yet in the tree, in arrival order (``seq``)."""

    seq: int
    record_id: str
    leaf_hash: bytes


@dataclass(frozen=True)
class StoredRecord:
    record_id: str
    tenant_id: str
    canonical: bytes
    leaf_hash: bytes
    leaf_index: int | None


class LogStorage(Protocol):
    def append(self, records: Sequence[EvidenceRecord]) -> None:
        """Store records as pending, in their order, in one transaction: all of them or none
        (a record whose id is already stored fails the whole call).  Durable once this
        returns: any other connection or process sees them.  An empty sequence is a no-op.
        """

    def state(self) -> LogState:
        """The integrated tree's state.  Before the first batch: size 0, the empty root
        ``SHA-256("")`` (RFC 9162 §2.1.1), an empty frontier and no head time.
        """

    def pending(self, limit: int) -> list[PendingLeaf]:
        """Up to ``limit`` records not yet integrated, oldest (first appended) first; ``seq``
        increases with arrival order.  ``leaf_hash`` is the record's RFC 9162 leaf hash.
        """

    def pending_count(self, cap: int | None = None) -> int:
        """How many appended records are not yet integrated (``pending`` without a limit);
        counted up to ``cap`` when given (a bounded query while a backlog grows: metrics,
        health, the sequencer's "is a full batch waiting")."""

    def oldest_pending_time(self) -> datetime | None:
        """When the oldest record not yet integrated was appended (None when none waits):
        health compares it with a bound, so sealing that stops cannot go unnoticed."""

    def integrate(
        self,
        *,
        expected_size: int,
        leaves: Sequence[PendingLeaf],
        nodes: Sequence[tuple[int, int, bytes]],
        frontier: Sequence[bytes],
        head: SignedTreeHead,
    ) -> None:
        """Atomically give ``leaves`` the indices ``expected_size..`` in their order, store
        ``nodes`` (levels >= 1; leaves are read from the records), the head and the new state
        (size ``expected_size + len(leaves)``, the head's root and time, ``frontier``).

        Raises ``SequencerError`` and writes nothing (no index, node, head or state) when the
        tree is no longer of ``expected_size``, when a leaf was already integrated (or comes
        twice): another sequencer won the race; or when ``head.tree_size`` is not
        ``expected_size + len(leaves)``.
        """

    def acquire_lease(self, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the sequencer lease for ``ttl_seconds`` from now: True when it was
        free, expired, released or already ``holder``'s (a renewal extends it); False, and no
        change, while another holder's lease is live.
        """

    def release_lease(self, holder: str) -> None:
        """Give the lease up so another process can take over at once; no effect unless
        ``holder`` holds it.
        """

    def head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The head of that size (equal to the one integrated), or the latest one when
        ``tree_size`` is None; None when no head of that size was stored (or none at all).
        """

    def note_key_id(self) -> bytes | None:
        """The note key ID (the first four bytes of ``note_signature``, c2sp.org/signed-note)
        of the latest head carrying a note signature; None while no head carries one.
        """

    def head_covering(self, leaf_index: int) -> SignedTreeHead | None:
        """The first head whose tree contains ``leaf_index`` (the smallest size above it: the
        head that sealed it); None while no head contains it.
        """

    def record(self, record_id: str) -> StoredRecord | None:
        """A stored record by id, integrated (``leaf_index`` set) or not (``leaf_index``
        None); None for an unknown id.
        """

    def nodes(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        """Hashes of complete subtrees (level 0 = leaf hashes) of the integrated tree, any
        number of ids in one call: ``(level, index)`` covers leaves
        ``[index * 2**level, (index + 1) * 2**level)``.  An id the integrated tree does not
        hold complete (beyond its size, or over pending records) is left out of the result.
        """
