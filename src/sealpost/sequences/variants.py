"""Champion/challenger: a deterministic variant per enrolment, by declared percentages."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sealpost.errors import InvalidInput

BUCKETS = 10_000


class InvalidSplit(InvalidInput):
    code = "invalid_variant_split"
    title = "The variants' percentages do not add up"
    problem_fields = ("field",)

    def __init__(self, why: str, field: str = "variants") -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


def validate_split(variants: Sequence[tuple[str, int]], field: str = "variants") -> list[int]:
    if not variants:
        raise InvalidSplit("at least one variant", field)
    total = sum(w for _, w in variants)
    if total == 100:
        return [w * 100 for _, w in variants]
    if total == BUCKETS:
        return [w for _, w in variants]
    raise InvalidSplit(f"weights add up to {total}, not 100 (percent) or 10000", field)


def assign(enrolment_id: str, variants: Sequence[tuple[str, int]]) -> str:
    weights = validate_split(variants)
    bucket = int.from_bytes(hashlib.sha256(enrolment_id.encode()).digest()[:8], "big") % BUCKETS
    edge = 0
    for (name, _), weight in zip(variants, weights, strict=True):
        edge += weight
        if bucket < edge:
            return name
    return variants[-1][0]
