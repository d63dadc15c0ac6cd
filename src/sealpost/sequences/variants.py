"""Champion/challenger: each enrolment gets one of a sequence's variants, deterministically, by
the variants' declared shares.

The enrolment id is hashed with SHA-256 and the first 8 bytes, read as an unsigned big-endian
integer, are reduced modulo 10,000 into a *bucket*; the variants own consecutive ranges of
buckets in their declared order, as many as their share in basis points.  The same id always
gets the same variant (on any machine, in any version of Python: no ``hash()``), ids spread
uniformly (the bias of ``2**64 mod 10000`` is below 10⁻¹⁵), and the assignment can be
recomputed by anyone from the id and the declared split.

Shares are whole percentages summing to 100, or basis points summing to 10,000 (say
``[("A", 9950), ("B", 50)]`` for a 0.5 % challenger); a split that is neither is a 422
(:class:`InvalidSplit`).  Changing the split of a running sequence moves enrolments between
variants: a new split is a new version of the sequence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sealpost.errors import InvalidInput

BUCKETS = 10_000
MAX_VARIANTS = 26
MAX_NAME = 40


class InvalidSplit(InvalidInput):
    """Variants whose shares do not add up, or that are not named once each; 422."""

    code = "invalid_variant_split"
    title = "The variants' shares do not add up"
    problem_fields = ("field",)

    def __init__(self, why: str, field: str = "variants") -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


def validate_split(variants: Sequence[tuple[str, int]], field: str = "variants") -> list[int]:
    """Each variant's share in basis points (the list sums to 10,000), or :class:`InvalidSplit`.

    Percentages (summing to 100) and basis points (summing to 10,000) are both accepted; a
    variant may have a zero share (a retired challenger keeps its name and its results)."""
    if not variants:
        raise InvalidSplit("at least one variant", field)
    if len(variants) > MAX_VARIANTS:
        raise InvalidSplit(f"at most {MAX_VARIANTS} variants", field)
    seen: set[str] = set()
    for n, (name, share) in enumerate(variants):
        where = f"{field}[{n}]"
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidSplit(f"a name of 1 to {MAX_NAME} characters", where)
        if name in seen:
            raise InvalidSplit(f"the name {name!r} is used twice", where)
        seen.add(name)
        if isinstance(share, bool) or not isinstance(share, int) or share < 0:
            raise InvalidSplit("a share is a whole number, zero or more", where)
    total = sum(share for _, share in variants)
    if total == 100:
        return [share * 100 for _, share in variants]
    if total == BUCKETS:
        return [share for _, share in variants]
    raise InvalidSplit(
        f"the shares add up to {total}: give percentages adding up to 100 "
        f"or basis points adding up to {BUCKETS}",
        field,
    )


def bucket(enrolment_id: str) -> int:
    """The enrolment's bucket in ``[0, 10000)``: SHA-256 of the id's UTF-8 bytes, first 8 bytes
    big-endian, modulo 10,000."""
    digest = hashlib.sha256(enrolment_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(enrolment_id: str, variants: Sequence[tuple[str, int]]) -> str:
    """The name of the variant ``enrolment_id`` belongs to under the split ``variants``."""
    shares = validate_split(variants)
    point = bucket(enrolment_id)
    edge = 0
    for (name, _), share in zip(variants, shares, strict=True):
        edge += share
        if point < edge:
            return name
    raise AssertionError("the shares add up to 10,000")  # pragma: no cover
