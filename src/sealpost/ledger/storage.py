"""The ledger's storage contract.

Modelled on Trillian: the Merkle maths and the sequencer live in ``ledger``; a backend only
stores rows and keeps its promises, listed on each method.  ``store.ledger_storage`` is the
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
        """Store records as pending, in one transaction; durable once this returns."""

    def state(self) -> LogState:
        """The integrated tree's state (size 0 and the empty root before the first batch)."""

    def pending(self, limit: int) -> list[PendingLeaf]:
        """Up to ``limit`` records not yet integrated, oldest first."""

    def pending_count(self) -> int:
        """How many committed records wait for a tree head."""

    def integrate(
        self,
        *,
        expected_size: int,
        leaves: Sequence[PendingLeaf],
        nodes: Sequence[tuple[int, int, bytes]],
        frontier: Sequence[bytes],
        head: SignedTreeHead,
    ) -> None:
        """Atomically give ``leaves`` the indices ``expected_size..``, store ``nodes`` (levels
        >= 1; leaves are read from the records), the head and the new state.

        Raises ``SequencerError`` and writes nothing when the tree is no longer of
        ``expected_size`` or a leaf was already integrated: another sequencer won the race.
        """

    def acquire_lease(self, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the sequencer lease; False while another holder's lease is live."""

    def release_lease(self, holder: str) -> None:
        """Give the lease up so another process can take over at once."""

    def head(self, tree_size: int | None = None) -> SignedTreeHead | None:
        """The head of that size, or the latest one when ``tree_size`` is None."""

    def head_covering(self, leaf_index: int) -> SignedTreeHead | None:
        """The first head whose tree contains ``leaf_index`` (the one that sealed it)."""

    def record(self, record_id: str) -> StoredRecord | None:
        """A stored record by id, integrated or not."""

    def nodes(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        """Hashes of complete subtrees (level 0 = leaf hashes) of the integrated tree."""
