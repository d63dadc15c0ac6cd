"""The RFC 9162 (Certificate Transparency v2) Merkle tree, with no I/O.

Trees are addressed by leaf ranges ``[begin, end)`` and by complete subtrees ``(level, index)``
covering leaves ``[index * 2**level, (index + 1) * 2**level)``.  A store that saves every node
returned by :func:`append` can answer any proof: each range of a proof plan is the
:func:`fold` of the nodes of its :func:`decompose`.  Hashes are SHA-256 (RFC 9162 §2.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()

NodeId = tuple[int, int]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof does not prove what it claims (or is malformed); the message says why."""


def leaf_hash(data: bytes) -> bytes:
    """``HASH(0x00 || data)``: the 0x00 prefix keeps leaves apart from nodes (§2.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``HASH(0x01 || left || right)`` (§2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``): the split point k of §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH by the recursive definition of §2.1.1; the reference for small trees and tests."""

    def mth(begin: int, end: int) -> bytes:
        if end - begin == 1:
            return leaf_hashes[begin]
        k = _split(end - begin)
        return node_hash(mth(begin, begin + k), mth(begin + k, end))

    return mth(0, len(leaf_hashes)) if leaf_hashes else EMPTY_ROOT


def decompose(begin: int, end: int) -> list[NodeId]:
    """The fewest complete subtrees covering ``[begin, end)``, left to right (a compact range).

    Sizes grow up to a split point aligned to the highest differing bit, then shrink.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    if begin == end:
        return []
    if begin == 0:
        left, right = 0, end
    else:
        mask = (1 << (((begin - 1) ^ end).bit_length() - 1)) - 1
        left, right = -begin & mask, end & mask
    nodes: list[NodeId] = []
    pos = begin
    while left:
        level = (left & -left).bit_length() - 1
        nodes.append((level, pos >> level))
        pos += 1 << level
        left &= left - 1
    while right:
        level = right.bit_length() - 1
        nodes.append((level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine a decomposition right to left; for a proof range this is its MTH (§2.1.1)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        acc = _sha256(b"\x01" + hashes[i] + acc).digest()
    return acc


def inclusion_proof_plan(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) of §2.1.3.1 as leaf ranges, bottom-up (the verifier's order)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin = mid
    ranges.reverse()
    return ranges


def consistency_proof_plan(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of §2.1.4.1 as leaf ranges, in proof order."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[tuple[int, int]] = []
    begin, end, whole = 0, new_size, True
    while old_size != end:
        mid = begin + _split(end - begin)
        if old_size <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((begin, mid))
            begin, whole = mid, False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def append(
    frontier: Sequence[bytes], size: int, new_leaf_hashes: Sequence[bytes]
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append leaves to the frontier (the hashes of ``decompose(0, size)``), single writer.

    Returns the new frontier and every complete node created, leaves included, as
    ``(level, index, hash)``.  Amortized O(1) hashes per leaf.
    """
    if size < 0 or len(frontier) != size.bit_count():
        raise ValueError(f"a frontier of {len(frontier)} hashes does not fit size {size}")
    stack = list(frontier)
    created: list[tuple[int, int, bytes]] = []
    for h in new_leaf_hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash has {len(h)} bytes, expected {HASH_SIZE}")
        created.append((0, size, h))
        level, index = 0, size
        while index & 1:  # a right child: merge with its left sibling, the last frontier node
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            level, index = level + 1, index >> 1
            created.append((level, index, h))
        stack.append(h)
        size += 1
    return stack, created


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The tree head of the tree whose frontier this is (§2.1.1)."""
    return fold(frontier)


def _check_hash(what: str, value: bytes) -> None:
    """Reject hashes of the wrong size: a short one could otherwise shift a concatenation."""
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has {len(value)} bytes, expected {HASH_SIZE}")


def _inclusion_len(index: int, size: int) -> int:
    """Length of PATH(index, D[size]): diverging levels plus left siblings above them."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf`` (§2.1.3.2, steps 1-4)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf)
    if len(proof) != (want := _inclusion_len(index, size)):
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {want}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_SIZE:  # inline: this loop is the hot path of verification
            raise ProofError(f"inclusion proof hash has {len(p)} bytes, expected {HASH_SIZE}")
        if sn == 0:  # step 4a; unreachable after the length check, kept as a guard
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 5
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` is in ``root`` (§2.1.3.2)."""
    _check_hash("root", root)
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def _consistency_len(old_size: int, new_size: int) -> int:
    """Length of PROOF(old_size, D[new_size]) for ``0 < old_size < new_size``."""
    level = (old_size & -old_size).bit_length() - 1  # the old tree's last complete subtree
    index = (old_size - 1) >> level
    return _inclusion_len(index, ((new_size - 1) >> level) + 1) + (index != 0)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless the old tree is a prefix of the new one (§2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency from size {old_size} to size {new_size}")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(f"consistency proof from size {old_size} must be empty")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("old root is not the empty tree's root")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}")
        return
    if len(proof) != (want := _consistency_len(old_size, new_size)):
        raise ProofError(f"consistency proof has {len(proof)} hashes, expected {want}")
    for p in proof:
        _check_hash("consistency proof hash", p)
    path = proof if old_size & (old_size - 1) else [old_root, *proof]  # step 2
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # step 6a; unreachable after the length check, kept as a guard
            raise ProofError("consistency proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 7
        raise ProofError("consistency proof is shorter than the path to the new root")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the old root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the new root of size {new_size}")
