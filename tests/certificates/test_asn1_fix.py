"""The asn1crypto definite-length workaround: same bytes, no forced re-encoding."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from asn1crypto import core

from sealpost.certificates import _asn1_fix


@pytest.mark.parametrize(
    ("header", "definite"),
    [
        (b"\x30\x82\x0f\x80", True),  # length 3968: ends in 0x80, definite
        (b"\x04\x82\x01\x80", True),  # an RSA-3072 signature's OCTET STRING
        (b"\x30\x81\x80", True),  # length 128
        (b"\x30\x80", False),  # BER indefinite
        (b"\xa0\x82\x0f\x84\x30\x82\x0f\x80", True),  # explicit tag around a definite value
        (b"\xa0\x80\x30\x80", False),  # indefinite inside indefinite
        (b"\x1f\x81\x00\x80", False),  # high tag number, then indefinite
        (b"\x1f\x81\x00\x81\x80", True),  # high tag number, then length 128
    ],
)
def test_the_innermost_length_is_read_correctly(header: bytes, definite: bool) -> None:
    assert _asn1_fix.last_length_is_definite(header) is definite


class _Holder(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any]]] = [("value", core.OctetString)]


def test_a_value_whose_length_ends_in_0x80_dumps_unchanged_without_re_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _asn1_fix.apply()
    _asn1_fix.apply()  # idempotent
    der = b"\x30\x82\x0f\x80" + b"\x04\x82\x0f\x7c" + b"x" * 0x0F7C
    forced = []
    original = core.Sequence._set_contents

    def spy(self: core.Sequence, force: bool = False) -> None:
        forced.append(force)
        original(self, force)

    monkeypatch.setattr(core.Sequence, "_set_contents", spy)
    value = _Holder.load(der)
    assert value.dump() == der and value.dump() == der
    assert True not in forced
    assert value.dump(force=True) == der  # an explicit force still re-encodes, to DER
    assert core.Sequence.load(b"\x30\x80\x04\x01x\x00\x00").dump(force=True) == b"\x30\x03\x04\x01x"
