"""Delivery receipts as SMPP 3.4 Appendix B writes them."""

from __future__ import annotations

from datetime import UTC, datetime

from sealpost.sms.smpp import parse_receipt


def test_a_receipt_text_gives_id_state_done_date_and_error() -> None:
    text = (
        b"id:0A1B2C sub:001 dlvrd:001 submit date:2612070900 done date:2612070901 "
        b"stat:DELIVRD err:000 text:Su cita"
    )
    assert parse_receipt(text) == (
        "0A1B2C",
        "delivered",
        datetime(2026, 12, 7, 9, 1, tzinfo=UTC),
        "000",
    )


def test_seconds_in_the_done_date_and_every_final_state() -> None:
    for stat, state in [
        ("UNDELIV", "undelivered"),
        ("EXPIRED", "expired"),
        ("REJECTD", "rejected"),
        ("DELETED", "deleted"),
        ("UNKNOWN", "unknown"),
        ("ENROUTE", "enroute"),
    ]:
        found = parse_receipt(f"id:7 done date:261207090130 stat:{stat} err:034".encode())
        assert found is not None
        assert found[1] == state and found[2] == datetime(2026, 12, 7, 9, 1, 30, tzinfo=UTC)
        assert found[3] == "034"


def test_text_that_is_no_receipt_is_none() -> None:
    assert parse_receipt(b"Hola, soy yo") is None
    assert parse_receipt(b"id:7 done date:2612070901 stat:LOLWUT err:0") is None
