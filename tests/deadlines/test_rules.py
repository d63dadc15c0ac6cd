"""Terms counted on known 2026 calendars (holidays 0.109), and properties of the count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.deadlines.calendars import ExtraDay, calendar_for
from sealpost.deadlines.rules import DeadlineRule, compute, end_date, zone_name_for
from sealpost.errors import InvalidInput

MADRID = ZoneInfo("Europe/Madrid")


def _at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=MADRID)


def _holidays(code: str, year: int = 2026) -> set[date]:
    cal = calendar_for(code)
    days = (date(year, 1, 1) + timedelta(days=n) for n in range(365))
    return {d for d in days if cal.holiday(d) is not None}


def test_regional_holidays_of_2026() -> None:
    """ES-CT adds 6 Apr, 24 Jun, 11 Sep, 26 Dec; ES-MD adds 2 Apr, 2 May, 2 Nov, 7 Dec."""
    es, ct, md = _holidays("ES"), _holidays("ES-CT"), _holidays("ES-MD")
    assert {date(2026, 4, 6), date(2026, 6, 24), date(2026, 9, 11), date(2026, 12, 26)} <= ct - es
    assert {date(2026, 4, 2), date(2026, 5, 2), date(2026, 11, 2), date(2026, 12, 7)} <= md - es
    assert date(2026, 12, 7) not in ct and date(2026, 4, 6) not in md


def test_ten_business_days_from_a_handover_in_catalonia() -> None:
    rule = DeadlineRule(10, "business_days", "handover", "ES-CT")
    computed = compute(rule, _at(date(2026, 12, 3)))
    assert computed.ends_on == date(2026, 12, 18)  # 8 Dec (Immaculate Conception) skipped
    assert date(2026, 12, 8) in {s.day for s in computed.skipped}
    assert computed.ends_at == datetime(2026, 12, 18, 22, 59, 59, 999000, tzinfo=UTC)
    assert computed.time_zone == "Europe/Madrid"
    assert computed.calendar_name == "ES-CT"
    assert computed.data_version.startswith("holidays 0.")
    assert computed.text == (
        f"The 10-business-day term in ES-CT ({computed.data_version}; Ley 39/2015 art. 30) "
        "counted from the handover on 3 Dec 2026 ends on 18 Dec 2026."
    )


def test_the_same_term_differs_between_regions() -> None:
    """Madrid moves 6 Dec (a Sunday in 2026) to Monday 7 Dec; Catalonia does not."""
    start = _at(date(2026, 12, 4))
    ct = compute(DeadlineRule(2, "business_days", "delivery", "ES-CT"), start)
    md = compute(DeadlineRule(2, "business_days", "delivery", "ES-MD"), start)
    assert ct.ends_on == date(2026, 12, 9)  # Mon 7, (Tue 8 holiday), Wed 9
    assert md.ends_on == date(2026, 12, 10)  # (Mon 7, Tue 8 holidays), Wed 9, Thu 10


def test_a_term_crossing_the_year_end() -> None:
    """From 18 Dec 2026 in ES-CT: 25 Dec, 26 Dec (Sant Esteve, Saturday), 1 Jan and 6 Jan
    2027 do not count."""
    rule = DeadlineRule(10, "business_days", "acceptance", "ES-CT")
    computed = compute(rule, _at(date(2026, 12, 18)))
    # 21 22 23 24 | 28 29 30 31 | 4 5 -> 10th business day is 5 Jan 2027
    assert computed.ends_on == date(2027, 1, 5)
    assert {date(2026, 12, 25), date(2027, 1, 1)} <= {s.day for s in computed.skipped}
    longer = compute(
        DeadlineRule(11, "business_days", "acceptance", "ES-CT"), _at(date(2026, 12, 18))
    )
    assert longer.ends_on == date(2027, 1, 7)  # 6 Jan (Epiphany) skipped


def test_a_natural_day_term_ending_on_a_holiday_moves_to_the_next_business_day() -> None:
    """10 natural days from 14 Jun 2026 end on Wed 24 Jun (Sant Joan in ES-CT): art. 30.5
    moves the end to Thu 25 Jun; in Madrid 24 Jun is a working day."""
    start = _at(date(2026, 6, 14))
    ct = compute(DeadlineRule(10, "natural_days", "handover", "ES-CT"), start)
    assert ct.ends_on == date(2026, 6, 25)
    assert [s.day for s in ct.skipped] == [date(2026, 6, 24)]
    assert ct.text.endswith("ends on 25 Jun 2026, moved past 1 non-business day.")
    md = compute(DeadlineRule(10, "natural_days", "handover", "ES-MD"), start)
    assert md.ends_on == date(2026, 6, 24)
    strict = compute(DeadlineRule(10, "natural_days", "handover", "ES-CT", "strict_natural"), start)
    assert strict.ends_on == date(2026, 6, 24)


def test_a_natural_day_term_ending_on_a_saturday_in_italy_and_france() -> None:
    start = datetime(2026, 3, 4, 9, tzinfo=UTC)  # + 10 days = Saturday 14 Mar
    for variant in ("it_art155_cpc", "fr_cpc_642", "es_art30"):
        rule = DeadlineRule(
            10, "natural_days", "delivery", "IT" if variant[:2] == "it" else "FR", variant
        )  # type: ignore[arg-type]
        assert compute(rule, start).ends_on == date(2026, 3, 16)


def test_the_trigger_date_is_the_regions_local_date() -> None:
    """A handover at 23:30 UTC on 31 Dec 2026 happened on 1 Jan 2027 in Madrid."""
    rule = DeadlineRule(1, "business_days", "handover", "ES-MD")
    computed = compute(rule, datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert computed.trigger_on == date(2027, 1, 1)
    assert computed.ends_on == date(2027, 1, 4)
    canary = compute(
        DeadlineRule(1, "business_days", "handover", "ES-CN"),
        datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
    )
    assert canary.trigger_on == date(2026, 12, 31)  # Atlantic/Canary is an hour behind
    assert canary.time_zone == "Atlantic/Canary"


def test_a_tenants_local_days_count_and_change_the_data_version() -> None:
    extra = {
        date(2026, 12, 9): ExtraDay(date(2026, 12, 9), "Festa local"),
        date(2026, 12, 10): ExtraDay(date(2026, 12, 10), "Tancat", "closure"),
    }
    cal = calendar_for("ES-CT", extra)
    rule = DeadlineRule(10, "business_days", "handover", "ES-CT")
    computed = compute(rule, _at(date(2026, 12, 3)), calendar=cal)
    assert computed.ends_on == date(2026, 12, 22)
    assert computed.calendar_name == "ES-CT + 2 local days"
    assert "local days sha256:" in computed.data_version


@pytest.mark.parametrize(
    ("code", "zone"),
    [
        ("ES", "Europe/Madrid"),
        ("ES-CT", "Europe/Madrid"),
        ("ES-CN", "Atlantic/Canary"),
        ("PT", "Europe/Lisbon"),
        ("PT-20", "Atlantic/Azores"),
        ("PT-30", "Atlantic/Madeira"),
        ("FR", "Europe/Paris"),
        ("IT-MI", "Europe/Rome"),
        ("RO", "Europe/Bucharest"),
        ("DE-BY", "Europe/Berlin"),
        ("JP", "Asia/Tokyo"),  # from zone.tab
    ],
)
def test_the_time_zone_of_a_region(code: str, zone: str) -> None:
    assert zone_name_for(code) == zone


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": 0}, "out of range"),
        ({"unit": "weeks"}, "deadline unit"),
        ({"starts_from": "sent"}, "starts_from"),
        ({"variant": "xx"}, "variant"),
        ({"variant": "it_art155_cpc"}, "natural days only"),
    ],
)
def test_a_bad_rule_is_refused_clearly(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "amount": 5,
        "unit": "business_days",
        "starts_from": "handover",
        "calendar": "ES",
    }
    with pytest.raises(InvalidInput, match=message):
        DeadlineRule(**{**values, **kwargs})  # type: ignore[arg-type]


def test_a_naive_trigger_time_is_refused() -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        compute(DeadlineRule(5, "business_days", "handover", "ES"), datetime(2026, 1, 1))


_CT = calendar_for("ES-CT")
_days = st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31))


@settings(max_examples=200, deadline=None)
@given(
    start=_days, amount=st.integers(1, 60), unit=st.sampled_from(["business_days", "natural_days"])
)
def test_the_end_is_a_business_day_after_the_start(start: date, amount: int, unit: str) -> None:
    rule = DeadlineRule(amount, unit, "handover", "ES-CT")  # type: ignore[arg-type]
    ends, _ = end_date(rule, start, _CT)
    assert _CT.is_business_day(ends)
    assert ends >= start + timedelta(days=amount)


@settings(max_examples=200, deadline=None)
@given(
    start=_days, amount=st.integers(1, 60), unit=st.sampled_from(["business_days", "natural_days"])
)
def test_the_end_is_monotone_in_the_amount(start: date, amount: int, unit: str) -> None:
    shorter = end_date(DeadlineRule(amount, unit, "handover", "ES-CT"), start, _CT)[0]  # type: ignore[arg-type]
    longer = end_date(DeadlineRule(amount + 1, unit, "handover", "ES-CT"), start, _CT)[0]  # type: ignore[arg-type]
    assert longer >= shorter
    if unit == "business_days":
        assert longer > shorter


@settings(max_examples=100, deadline=None)
@given(start=_days, amount=st.integers(1, 40))
def test_business_days_counted_are_exactly_the_amount(start: date, amount: int) -> None:
    ends, skipped = end_date(DeadlineRule(amount, "business_days", "handover", "ES-CT"), start, _CT)
    assert (ends - start).days - len(skipped) == amount


def test_the_documented_repetition_of_a_computation_works() -> None:
    """docs/deadlines.md, "Repeating a computation", run on a DeadlineSet's details."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "deadlines.md").read_text()
    section = text[text.index("## Repeating a computation") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    computed = compute(
        DeadlineRule(10, "business_days", "handover", "ES-CT"), _at(date(2026, 12, 3))
    )
    record = {"details": {"deadline": computed.to_json()}}
    namespace: dict[str, object] = {"record": record}
    exec(code.group(1), namespace)  # noqa: S102  (our own documentation)
    assert namespace["again"] == computed
