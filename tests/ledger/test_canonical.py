"""Canonical JSON: the fast path is byte-identical to RFC 8785, and non-JSON is refused."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.ledger.canonical import CanonicalizationError, canonical_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_known_rfc8785_vector() -> None:
    # RFC 8785 §3.2.3: members sorted by UTF-16 code units, minimal escaping
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "1": "One",
        "\U0001f600": "Emoji",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json({"b": [1, "\u0007\n"], "a": None}) == b'{"a":null,"b":[1,"\\u0007\\n"]}'


@pytest.mark.parametrize(
    "bad", [1.5, {"x": float("nan")}, {"x": 2**60}, {1: "int key"}, {"x": object()}]
)
def test_values_a_verifier_could_not_rebuild_are_refused(bad: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(bad)
