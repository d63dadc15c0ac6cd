"""Tests of the RFC 9162 Merkle tree: published vectors, a naive oracle, tampered proofs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    NodeId,
    ProofError,
    append,
    consistency_proof_plan,
    decompose,
    fold,
    inclusion_proof_plan,
    leaf_hash,
    node_hash,
    root_from_frontier,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "testdata" / "merkle" / "rfc6962_vectors.json").read_text()
)
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
NODES = {
    (level, index): bytes.fromhex(h)
    for level, row in enumerate(VECTORS["node_hashes"])
    for index, h in enumerate(row)
}
ROOTS = [bytes.fromhex(VECTORS["empty_root"])] + [bytes.fromhex(x) for x in VECTORS["roots"]]
INCLUSION = [
    (v["index"], v["size"], [bytes.fromhex(x) for x in v["proof"]])
    for v in VECTORS["inclusion_proofs"]
]
CONSISTENCY = [
    (v["old_size"], v["new_size"], [bytes.fromhex(x) for x in v["proof"]])
    for v in VECTORS["consistency_proofs"]
]

HYPOTHESIS = settings(deadline=None, max_examples=150, database=None)


# --- A naive oracle, transcribed from the text of RFC 9162 §2.1 -------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data* (§2.1.1)."""
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (§2.1.3.1)."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (§2.1.4.1)."""
    if m == len(d):
        return [] if b else [naive_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) (§2.1.4.1)."""
    return naive_subproof(m, d, True)


# --- Helpers: a tree kept the way a store would keep it ---------------------------------------


def build(
    data: Sequence[bytes], batches: Sequence[int] = ()
) -> tuple[list[bytes], dict[NodeId, bytes]]:
    """Append ``data`` in batches of the given sizes (the rest in one batch); keep every node."""
    frontier: list[bytes] = []
    store: dict[NodeId, bytes] = {}
    size = 0
    cuts = [*batches, len(data)]
    for cut in cuts:
        chunk = data[size : size + cut]
        frontier, created = append(frontier, size, [leaf_hash(x) for x in chunk])
        for level, index, h in created:
            store[level, index] = h
        size += len(chunk)
    return frontier, store


def range_hash(store: dict[NodeId, bytes], begin: int, end: int) -> bytes:
    return fold([store[node] for node in decompose(begin, end)])


def proof_from_plan(store: dict[NodeId, bytes], plan: Sequence[tuple[int, int]]) -> list[bytes]:
    return [range_hash(store, begin, end) for begin, end in plan]


def leaf_data(n: int, salt: bytes = b"") -> list[bytes]:
    return [i.to_bytes(4, "big") + salt for i in range(n)]


def flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


GOLDEN_FRONTIER, GOLDEN_STORE = build(LEAVES)


# --- Published vectors ------------------------------------------------------------------------


def test_constants() -> None:
    assert HASH_SIZE == 32
    assert bytes.fromhex(VECTORS["empty_root"]) == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert fold([]) == EMPTY_ROOT
    assert issubclass(ProofError, ValueError)


def test_golden_leaf_and_node_hashes() -> None:
    assert [leaf_hash(x) for x in LEAVES] == [NODES[0, i] for i in range(8)]
    assert node_hash(NODES[0, 0], NODES[0, 1]) == NODES[1, 0]
    assert node_hash(NODES[2, 0], NODES[2, 1]) == NODES[3, 0]
    # append() returns exactly the 15 complete nodes of the 8-leaf tree, with their hashes.
    assert GOLDEN_STORE == NODES


@pytest.mark.parametrize("size", range(9))
def test_golden_roots_and_frontiers(size: int) -> None:
    leaf_hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert root_from_leaf_hashes(leaf_hashes) == ROOTS[size]
    frontier: list[bytes] = []
    for i, h in enumerate(leaf_hashes):  # one leaf at a time
        frontier, _ = append(frontier, i, [h])
    assert frontier == [NODES[level, index] for level, index in VECTORS["frontiers"][size]]
    assert [tuple(x) for x in VECTORS["frontiers"][size]] == decompose(0, size)
    assert root_from_frontier(frontier) == ROOTS[size]
    assert range_hash(GOLDEN_STORE, 0, size) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_golden_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    assert proof_from_plan(GOLDEN_STORE, inclusion_proof_plan(index, size)) == proof
    leaf = leaf_hash(LEAVES[index])
    assert root_from_inclusion_proof(leaf, index, size, proof) == ROOTS[size]
    verify_inclusion(leaf, index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old_size", "new_size", "proof"), CONSISTENCY)
def test_golden_consistency_proofs(old_size: int, new_size: int, proof: list[bytes]) -> None:
    assert proof_from_plan(GOLDEN_STORE, consistency_proof_plan(old_size, new_size)) == proof
    verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)


def _plan_nodes(plan: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The node ids of a plan in transparency-dev's order: a multi-node range right to left."""
    return [list(node) for begin, end in plan for node in reversed(decompose(begin, end))]


@pytest.mark.parametrize("vector", VECTORS["inclusion_nodes"])
def test_golden_inclusion_plans(vector: dict[str, Any]) -> None:
    assert _plan_nodes(inclusion_proof_plan(vector["index"], vector["size"])) == vector["nodes"]


@pytest.mark.parametrize("vector", VECTORS["consistency_nodes"])
def test_golden_consistency_plans(vector: dict[str, Any]) -> None:
    plan = consistency_proof_plan(vector["old_size"], vector["new_size"])
    assert _plan_nodes(plan) == vector["nodes"]


# --- Tampered proofs --------------------------------------------------------------------------

InclusionArgs = tuple[bytes, int, int, list[bytes], bytes]


def _inclusion_tampers(index: int, size: int, proof: list[bytes]) -> dict[str, InclusionArgs]:
    # Not here: size +- 1.  A neighbouring size may share the proof's shape and thus lead to the
    # same root; only the signed tree head binds a root to its size (as in transparency-dev).
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size]
    other = leaf_hash(b"wrong leaf")
    cases: dict[str, InclusionArgs] = {
        "wrong leaf": (other, index, size, proof, root),
        "leaf of another index": (NODES[0, (index + 1) % 8], index, size, proof, root),
        "31-byte leaf": (leaf[:31], index, size, proof, root),
        "index - 1": (leaf, index - 1, size, proof, root),
        "index + 1": (leaf, index + 1, size, proof, root),
        "index ^ 2": (leaf, index ^ 2, size, proof, root),
        "size * 2": (leaf, index, size * 2, proof, root),
        "size // 2": (leaf, index, size // 2, proof, root),
        "empty-tree root": (leaf, index, size, proof, EMPTY_ROOT),
        "31-byte root": (leaf, index, size, proof, root[:31]),
        "dropped last": (leaf, index, size, proof[:-1], root),
        "dropped first": (leaf, index, size, proof[1:], root),
        "trailing root": (leaf, index, size, [*proof, root], root),
        "trailing zeros": (leaf, index, size, [*proof, bytes(32)], root),
        "trailing empty": (leaf, index, size, [*proof, b""], root),
        "preceding root": (leaf, index, size, [root, *proof], root),
        "inserted hash": (leaf, index, size, [proof[0], other, *proof[1:]], root),
        "31-byte hash": (leaf, index, size, [proof[0][:31], *proof[1:]], root),
        "33-byte hash": (leaf, index, size, [*proof[:-1], proof[-1] + b"\x00"], root),
    }
    for i in range(len(proof)):
        cases[f"flipped bit in proof[{i}]"] = (
            leaf,
            index,
            size,
            [flip(h) if j == i else h for j, h in enumerate(proof)],
            root,
        )
    return cases


INCLUSION_TAMPERS = [
    pytest.param(*args, id=f"{index}/{size}: {name}")
    for index, size, proof in INCLUSION
    if proof
    for name, args in _inclusion_tampers(index, size, proof).items()
]


@pytest.mark.parametrize(("leaf", "index", "size", "proof", "root"), INCLUSION_TAMPERS)
def test_tampered_inclusion_proof_is_rejected(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, root)


def test_inclusion_reports_why() -> None:
    index, size, proof = INCLUSION[1]
    leaf = leaf_hash(LEAVES[index])
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(leaf, index, size, [flip(proof[0]), *proof[1:]], ROOTS[size])
    with pytest.raises(ProofError, match="4 hashes, expected 3"):
        verify_inclusion(leaf, index, size, [*proof, proof[0]], ROOTS[size])
    with pytest.raises(ProofError, match="31 bytes"):
        verify_inclusion(leaf, index, size, [proof[0][:31], *proof[1:]], ROOTS[size])
    with pytest.raises(ProofError, match="not in a tree"):
        root_from_inclusion_proof(leaf, 8, 8, proof)


def test_inclusion_single_entry() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)  # a one-leaf tree: the root is the leaf hash
    with pytest.raises(ProofError):
        verify_inclusion(h, 0, 1, [], leaf_hash(b"other"))
    with pytest.raises(ProofError):
        verify_inclusion(b"", 0, 1, [], h)
    with pytest.raises(ProofError):
        verify_inclusion(h, 0, 1, [], b"")
    with pytest.raises(ProofError):
        verify_inclusion(h, 0, 1, [h], h)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 4), (4, 4)])
def test_inclusion_index_out_of_range(index: int, size: int) -> None:
    h = leaf_hash(b"data")
    with pytest.raises(ProofError, match="not in a tree"):
        verify_inclusion(h, index, size, [], EMPTY_ROOT)


ConsistencyArgs = tuple[int, int, bytes, bytes, list[bytes]]


def _consistency_tampers(m: int, n: int, proof: list[bytes]) -> dict[str, ConsistencyArgs]:
    r1, r2 = ROOTS[m], ROOTS[n]
    cases: dict[str, ConsistencyArgs] = {
        "old_size - 1": (m - 1, n, r1, r2, proof),
        "old_size + 1": (m + 1, n, r1, r2, proof),
        "old_size ^ 2": (m ^ 2, n, r1, r2, proof),
        "new_size * 2": (m, n * 2, r1, r2, proof),
        "new_size // 2": (m, n // 2, r1, r2, proof),
        "wrong old root": (m, n, leaf_hash(b"wrong"), r2, proof),
        "wrong new root": (m, n, r1, leaf_hash(b"wrong"), proof),
        "swapped roots": (m, n, r2, r1, proof),
        "31-byte old root": (m, n, r1[:31], r2, proof),
        "31-byte new root": (m, n, r1, r2[:31], proof),
        "empty proof": (m, n, r1, r2, []),
        "dropped last": (m, n, r1, r2, proof[:-1]),
        "dropped first": (m, n, r1, r2, proof[1:]),
        "trailing old root": (m, n, r1, r2, [*proof, r1]),
        "trailing new root": (m, n, r1, r2, [*proof, r2]),
        "trailing empty": (m, n, r1, r2, [*proof, b""]),
        "preceding old root": (m, n, r1, r2, [r1, *proof]),
        "preceding new root": (m, n, r1, r2, [r2, *proof]),
        "preceding proof[0]": (m, n, r1, r2, [proof[0], *proof]),
        "31-byte hash": (m, n, r1, r2, [proof[0][:31], *proof[1:]]),
        "33-byte hash": (m, n, r1, r2, [*proof[:-1], proof[-1] + b"\x00"]),
    }
    for i in range(len(proof)):
        cases[f"flipped bit in proof[{i}]"] = (
            m,
            n,
            r1,
            r2,
            [flip(h, 4) if j == i else h for j, h in enumerate(proof)],
        )
    return cases


CONSISTENCY_TAMPERS = [
    pytest.param(*args, id=f"{m}/{n}: {name}")
    for m, n, proof in CONSISTENCY
    if proof
    for name, args in _consistency_tampers(m, n, proof).items()
]


@pytest.mark.parametrize(("old_size", "new_size", "old", "new", "proof"), CONSISTENCY_TAMPERS)
def test_tampered_consistency_proof_is_rejected(
    old_size: int, new_size: int, old: bytes, new: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(ProofError):
        verify_consistency(old_size, new_size, old, new, proof)


def test_consistency_reports_why() -> None:
    m, n, proof = CONSISTENCY[2]  # 6 -> 8
    with pytest.raises(ProofError, match="old root of size 6"):
        verify_consistency(m, n, leaf_hash(b"x"), ROOTS[n], proof)
    with pytest.raises(ProofError, match="new root of size 8"):
        verify_consistency(m, n, ROOTS[m], leaf_hash(b"x"), proof)
    with pytest.raises(ProofError, match="2 hashes, expected 3"):
        verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:2])
    with pytest.raises(ProofError, match="31 bytes"):
        verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof[:2], proof[2][:31]])


def test_consistency_trivial_cases() -> None:
    some, other = leaf_hash(b"some"), leaf_hash(b"other")
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, some, [])  # the empty tree is a prefix of every tree
    verify_consistency(3, 3, some, some, [])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(3, 3, some, other, [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(3, 3, some, some, [some])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 5, EMPTY_ROOT, some, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, some, some, [])
    with pytest.raises(ProofError, match="31 bytes"):
        verify_consistency(3, 3, some[:31], some[:31], [])


@pytest.mark.parametrize(("old_size", "new_size"), [(1, 0), (2, 1), (9, 8), (-1, 3)])
def test_consistency_backwards_is_rejected(old_size: int, new_size: int) -> None:
    h = leaf_hash(b"x")
    with pytest.raises(ProofError, match="no consistency"):
        verify_consistency(old_size, new_size, h, h, [])


def test_consistency_needs_a_proof_between_different_sizes() -> None:
    with pytest.raises(ProofError, match="0 hashes, expected 1"):
        verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])


# --- Argument checks of the planning functions ------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (-1, 5), (5, 5)])
def test_inclusion_plan_rejects_bad_index(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof_plan(index, size)


@pytest.mark.parametrize(("old_size", "new_size"), [(0, 5), (0, 0), (5, 4), (-1, 3)])
def test_consistency_plan_rejects_bad_sizes(old_size: int, new_size: int) -> None:
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof_plan(old_size, new_size)


def test_consistency_plan_same_size_is_empty() -> None:
    assert consistency_proof_plan(7, 7) == []


@pytest.mark.parametrize(("begin", "end"), [(5, 3), (-1, 3)])
def test_decompose_rejects_bad_range(begin: int, end: int) -> None:
    with pytest.raises(ValueError, match="invalid range"):
        decompose(begin, end)


def test_decompose_examples() -> None:
    assert decompose(0, 0) == []
    assert decompose(3, 3) == []
    assert decompose(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert decompose(3, 7) == [(0, 3), (1, 2), (0, 6)]
    assert decompose(1, 16) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert decompose(4, 8) == [(2, 1)]


def test_append_rejects_bad_input() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(ValueError, match="does not fit size 3"):
        append([h], 3, [h])
    with pytest.raises(ValueError, match="31 bytes"):
        append([], 0, [h[:31]])
    assert append([h], 1, []) == ([h], [])


# --- Exhaustive small trees and property tests against the naive oracle -----------------------

SMALL = 40
SMALL_DATA = leaf_data(SMALL)
_, SMALL_STORE = build(SMALL_DATA)


@pytest.mark.parametrize("size", range(1, SMALL + 1))
def test_every_proof_of_small_trees(size: int) -> None:
    data = SMALL_DATA[:size]
    root = naive_mth(data)
    assert range_hash(SMALL_STORE, 0, size) == root
    for index in range(size):
        plan = inclusion_proof_plan(index, size)
        proof = proof_from_plan(SMALL_STORE, plan)
        assert proof == naive_path(index, data)
        for (begin, end), h in zip(plan, proof, strict=True):
            assert h == naive_mth(data[begin:end])
        verify_inclusion(leaf_hash(data[index]), index, size, proof, root)
    for old_size in range(1, size + 1):
        plan = consistency_proof_plan(old_size, size)
        proof = proof_from_plan(SMALL_STORE, plan)
        assert proof == naive_proof(old_size, data)
        for (begin, end), h in zip(plan, proof, strict=True):
            assert h == naive_mth(data[begin:end])
        verify_consistency(old_size, size, naive_mth(data[:old_size]), root, proof)


@HYPOTHESIS
@given(
    batches=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12),
    start=st.integers(min_value=0, max_value=20),
    salt=st.binary(max_size=8),
)
def test_append_batches_match_naive_root(batches: list[int], start: int, salt: bytes) -> None:
    data = leaf_data(start + sum(batches), salt)
    frontier, store = build(data[:start])
    size = start
    for batch in batches:
        new = [leaf_hash(x) for x in data[size : size + batch]]
        frontier, created = append(frontier, size, new)
        ids = [(level, index) for level, index, _ in created]
        # exactly the complete subtrees that end inside the new leaves, each one new
        expected = {
            (level, index)
            for level in range(12)
            for index in range((size + batch) >> level)
            if (index + 1) << level > size
        }
        assert len(ids) == len(expected)
        assert set(ids) == expected
        assert not expected & store.keys()
        for level, index, h in created:
            assert h == naive_mth(data[index << level : (index + 1) << level])
            store[level, index] = h
        size += batch
        assert frontier == [store[node] for node in decompose(0, size)]
        assert root_from_frontier(frontier) == naive_mth(data[:size])
        assert root_from_leaf_hashes([leaf_hash(x) for x in data[:size]]) == naive_mth(data[:size])


@HYPOTHESIS
@given(begin=st.integers(min_value=0, max_value=1 << 20), length=st.integers(0, 1 << 20))
def test_decompose_is_the_minimal_aligned_cover(begin: int, length: int) -> None:
    end = begin + length
    greedy: list[NodeId] = []
    pos = begin
    while pos < end:  # the largest aligned complete subtree that starts at pos and fits
        level = (pos & -pos).bit_length() - 1 if pos else 64
        while pos + (1 << level) > end:
            level -= 1
        greedy.append((level, pos >> level))
        pos += 1 << level
    assert decompose(begin, end) == greedy


def _tree(n: int, batches: list[int], salt: bytes) -> tuple[list[bytes], dict[NodeId, bytes]]:
    data = leaf_data(n, salt)
    return data, build(data, batches)[1]


@st.composite
def _size_and_position(draw: Callable[..., Any], lower: int) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=300))
    return size, draw(st.integers(min_value=lower, max_value=size - 1 + lower))


@HYPOTHESIS
@given(
    sp=_size_and_position(0),
    batches=st.lists(st.integers(min_value=1, max_value=64), max_size=6),
    salt=st.binary(max_size=8),
    bit=st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1),
)
def test_inclusion_matches_naive_path(
    sp: tuple[int, int], batches: list[int], salt: bytes, bit: int
) -> None:
    size, index = sp
    data, store = _tree(size, batches, salt)
    plan = inclusion_proof_plan(index, size)
    proof = proof_from_plan(store, plan)
    assert proof == naive_path(index, data)
    leaf, root = leaf_hash(data[index]), naive_mth(data)
    assert root_from_inclusion_proof(leaf, index, size, proof) == root
    verify_inclusion(leaf, index, size, proof, root)
    for i in range(len(proof)):  # any single flipped bit breaks it
        bad = bytearray(proof[i])
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, [*proof[:i], bytes(bad), *proof[i + 1 :]], root)


@HYPOTHESIS
@given(
    sp=_size_and_position(1),
    batches=st.lists(st.integers(min_value=1, max_value=64), max_size=6),
    salt=st.binary(max_size=8),
    bit=st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1),
)
def test_consistency_matches_naive_proof(
    sp: tuple[int, int], batches: list[int], salt: bytes, bit: int
) -> None:
    new_size, old_size = sp
    data, store = _tree(new_size, batches, salt)
    plan = consistency_proof_plan(old_size, new_size)
    proof = proof_from_plan(store, plan)
    assert proof == naive_proof(old_size, data)
    old_root, new_root = naive_mth(data[:old_size]), naive_mth(data)
    verify_consistency(old_size, new_size, old_root, new_root, proof)
    for i in range(len(proof)):
        bad = bytearray(proof[i])
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ProofError):
            verify_consistency(
                old_size, new_size, old_root, new_root, [*proof[:i], bytes(bad), *proof[i + 1 :]]
            )
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
        with pytest.raises(ProofError):
            verify_consistency(old_size, new_size, old_root, new_root, [*proof, proof[-1]])
