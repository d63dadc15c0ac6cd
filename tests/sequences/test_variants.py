"""Champion/challenger: deterministic assignment by declared shares."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from sealpost.errors import InvalidInput
from sealpost.sequences.variants import InvalidSplit, assign, bucket, validate_split

SPLIT = [("champion", 50), ("challenger_a", 30), ("challenger_b", 20)]


def test_ten_thousand_enrolments_follow_the_declared_shares_within_two_percent() -> None:
    ids = [str(uuid.UUID(int=n, version=4)) for n in range(10_000)]
    counts = Counter(assign(i, SPLIT) for i in ids)
    for name, percent in SPLIT:
        assert abs(counts[name] / len(ids) * 100 - percent) <= 2, counts
    random_ids = [str(uuid.uuid4()) for _ in range(10_000)]
    counts = Counter(assign(i, SPLIT) for i in random_ids)
    for name, percent in SPLIT:
        assert abs(counts[name] / len(random_ids) * 100 - percent) <= 2, counts


def test_the_same_enrolment_always_gets_the_same_variant() -> None:
    ids = [str(uuid.uuid4()) for _ in range(500)]
    first = [assign(i, SPLIT) for i in ids]
    assert first == [assign(i, list(SPLIT)) for i in ids]
    # Anyone can recompute it: SHA-256, first 8 bytes big-endian, modulo 10,000.
    assert bucket("enr_0001") == 7187
    assert assign("enr_0001", SPLIT) == "challenger_a"  # 5000 <= 7187 < 8000
    assert assign("enr_0001", [("only", 100)]) == "only"


def test_basis_points_allow_a_small_challenger() -> None:
    split = [("champion", 9950), ("tiny", 50)]
    assert validate_split(split) == [9950, 50]
    counts = Counter(assign(str(uuid.uuid4()), split) for _ in range(20_000))
    assert 40 <= counts["tiny"] <= 170
    assert validate_split([("a", 0), ("b", 100)]) == [0, 10_000]
    assert {assign(str(uuid.uuid4()), [("a", 0), ("b", 100)]) for _ in range(200)} == {"b"}


@pytest.mark.parametrize(
    ("split", "field", "words"),
    [
        ([("a", 50), ("b", 40)], "variants", "add up to 90"),
        ([("a", 60), ("b", 60)], "variants", "add up to 120"),
        ([("a", 5000), ("b", 4000)], "variants", "add up to 9000"),
        ([], "variants", "at least one"),
        ([("a", 50), ("a", 50)], "variants[1]", "used twice"),
        ([("a", -10), ("b", 110)], "variants[0]", "zero or more"),
        ([("", 100)], "variants[0]", "a name"),
        ([("a", 50.5), ("b", 49.5)], "variants[0]", "whole number"),
    ],
)
def test_a_split_that_does_not_add_up_is_a_422(
    split: list[tuple[str, int]], field: str, words: str
) -> None:
    with pytest.raises(InvalidSplit) as caught:
        validate_split(split)
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 422
    assert caught.value.code == "invalid_variant_split"
    assert caught.value.field == field and words in str(caught.value)
    with pytest.raises(InvalidSplit):
        assign("enr_1", split)
