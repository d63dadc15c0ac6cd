"""GSM-7 or UCS-2, and how many segments the operator will bill (TS 23.038, TS 23.040)."""

from __future__ import annotations

import pytest

from sealpost.sms.model import encode, encoding_of, message_state, split


@pytest.mark.parametrize("accented", ["á", "í", "ó", "ú"])
def test_a_spanish_acute_vowel_turns_the_whole_text_into_ucs2(accented: str) -> None:
    assert encoding_of(f"Su expediente está listo {accented}") == "ucs2"
    assert split("x" * 69 + accented).segments == 1  # 70 UCS-2 units: one SMS
    assert split("x" * 70 + accented).segments == 2  # 71: two parts of up to 67


@pytest.mark.parametrize("kept", ["ñ", "é", "ü", "à", "Ñ", "É"])
def test_n_tilde_and_e_acute_stay_gsm7(kept: str) -> None:
    text = f"Señor, su pago de 120 {kept} vence mañana"
    assert encoding_of(text) == "gsm7"
    assert split("x" * 159 + kept).segments == 1  # one septet each


def test_gsm7_fits_160_septets_then_153_per_part() -> None:
    assert split("a" * 160).segments == 1
    long = split("a" * 161)
    assert (long.segments, [len(p) for p in long.parts]) == (2, [153, 8])
    assert split("a" * 306).segments == 2 and split("a" * 307).segments == 3


def test_extension_characters_cost_two_septets_and_are_never_split() -> None:
    assert split("€" * 80).units == 160 and split("€" * 80).segments == 1
    assert split("€" * 81).segments == 2
    parts = split("a" + "[" * 100).parts  # 1 + 200 septets: parts of 153 would cut an escape
    assert parts[0] == "a" + "[" * 76 and sum(len(p) for p in parts) == 101
    assert encode("€[", "gsm7") == bytes((0x1B, 0x65, 0x1B, 0x3C))


def test_ucs2_fits_70_units_then_67_per_part_and_keeps_surrogate_pairs_whole() -> None:
    assert split("á" * 70).segments == 1
    four = split("á" * 268)
    assert (four.encoding, four.segments, len(four.parts[-1])) == ("ucs2", 4, 67)
    emoji = split("a" * 66 + "😀" * 3)  # 66 + 6 units: the first emoji would straddle 67
    assert emoji.parts[0] == "a" * 66 and emoji.units == 72
    assert encode("á", "ucs2") == b"\x00\xe1"


def test_the_message_is_the_worst_of_its_segments() -> None:
    assert message_state(["delivered", "delivered"]) == "delivered"
    assert message_state(["delivered", "accepted"]) is None
    assert message_state(["delivered", "expired"]) == "undelivered"
    assert message_state(["accepted", "undelivered"]) == "undelivered"
