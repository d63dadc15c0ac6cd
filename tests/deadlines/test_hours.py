"""Business hours: open spans per weekday with a lunch break, holidays, DST, and counting
business time forward and between two instants (the archive's reply clock stands on it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealpost.deadlines.calendars import ExtraDay, calendar_for
from sealpost.deadlines.hours import InvalidHours, ServiceHours, parse_spans, spans_json

MADRID = ZoneInfo("Europe/Madrid")
WEEK = {d: [["09:00", "14:00"], ["15:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def hours(calendar: str | None = "ES", week: dict[str, list[list[str]]] = WEEK) -> ServiceHours:
    cal = calendar_for(calendar) if calendar else None
    return ServiceHours(MADRID, parse_spans(week), cal)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=MADRID)  # type: ignore[misc]


def test_open_and_closed_across_lunch_evening_weekend_and_holiday() -> None:
    h = hours()
    assert h.is_open(local(2026, 12, 9, 9, 0))  # start included
    assert not h.is_open(local(2026, 12, 9, 14, 0))  # lunch: end excluded
    assert h.next_open(local(2026, 12, 9, 14, 30)) == local(2026, 12, 9, 15, 0)
    assert not h.is_open(local(2026, 12, 9, 18, 0))
    # Friday evening → Monday 7 December 2026 is a working day; Tuesday 8 is Inmaculada
    assert h.next_open(local(2026, 12, 4, 18, 30)) == local(2026, 12, 7, 9, 0)
    assert not h.is_open(local(2026, 12, 8, 10, 0))
    assert h.next_open(local(2026, 12, 7, 18, 0)) == local(2026, 12, 9, 9, 0)
    # Christmas (Friday 25) closes; the weekend follows: Monday 28
    assert h.next_open(local(2026, 12, 24, 18, 0)) == local(2026, 12, 28, 9, 0)


def test_adding_business_minutes_skips_lunch_nights_weekends_and_holidays() -> None:
    h = hours()
    # 13:30 + 60 min: 30 before lunch, 30 after it
    assert h.add_minutes(local(2026, 12, 9, 13, 30), 60) == local(2026, 12, 9, 15, 30)
    # exactly at the close it is the closing instant, not the next opening
    assert h.add_minutes(local(2026, 12, 9, 17, 0), 60) == local(2026, 12, 9, 18, 0)
    # Monday 7 at 17:00 + 8 business hours: 1 h on Monday, Tuesday is a holiday, 7 h on
    # Wednesday (5 h morning, 2 h afternoon)
    assert h.add_minutes(local(2026, 12, 7, 17, 0), 480) == local(2026, 12, 9, 17, 0)
    # counting from a closed instant starts at the opening
    assert h.add_minutes(local(2026, 12, 5, 11, 0), 30) == local(2026, 12, 7, 9, 30)
    assert h.elapsed_minutes(local(2026, 12, 4, 17, 0), local(2026, 12, 9, 10, 0)) == 60 + 480 + 60


def test_a_tenant_s_own_day_closes_too() -> None:
    extra = {date(2026, 12, 9): ExtraDay(date(2026, 12, 9), "Fiesta local")}
    h = ServiceHours(MADRID, parse_spans(WEEK), calendar_for("ES", extra))
    assert h.next_open(local(2026, 12, 7, 18, 0)) == local(2026, 12, 10, 9, 0)


def test_dst_days_count_real_elapsed_time() -> None:
    # open 00:00-24:00 every day: on 28 March 2027 Madrid springs forward (23 h day) and on
    # 31 October 2027 falls back (25 h day)
    always = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    h = hours(None, always)
    spring = h.elapsed(local(2027, 3, 28, 0, 0), local(2027, 3, 29, 0, 0))
    autumn = h.elapsed(local(2027, 10, 31, 0, 0), local(2027, 11, 1, 0, 0))
    assert spring == timedelta(hours=23)
    assert autumn == timedelta(hours=25)
    # a span opening inside the spring-forward gap (02:00-03:00 does not exist that night)
    # opens the gap's length later, 03:30 CEST (RFC 5545 §3.3.5), and lasts until 05:00
    gap = hours(None, {"sun": [["02:30", "05:00"]]})
    assert gap.next_open(local(2027, 3, 28, 0, 0)) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert gap.elapsed(local(2027, 3, 27, 0, 0), local(2027, 3, 29, 0, 0)) == timedelta(hours=1.5)


def test_bad_hours_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidHours, match=r"hours\.mon\.0"):
        parse_spans({"mon": [["18:00", "09:00"]]})
    with pytest.raises(InvalidHours, match="overlap"):
        parse_spans({"tue": [["09:00", "14:00"], ["13:00", "18:00"]]})
    with pytest.raises(InvalidHours, match="weekday"):
        parse_spans({"funday": [["09:00", "10:00"]]})
    with pytest.raises(InvalidHours, match="at least one"):
        ServiceHours(MADRID, parse_spans({"mon": []}))
    assert spans_json(parse_spans({"Sat": [["10:00", "24:00"]]})) == {"sat": [["10:00", "24:00"]]}


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
durations = st.integers(min_value=0, max_value=60 * 24 * 40).map(lambda m: timedelta(minutes=m))
H = hours()


@given(instants, durations)
def test_add_then_elapsed_round_trips(start: datetime, business: timedelta) -> None:
    end = H.add(start, business)
    assert H.elapsed(start, end) == business
    assert end >= start


@given(instants, durations, durations)
def test_adding_is_additive_and_monotonic(start: datetime, a: timedelta, b: timedelta) -> None:
    assert H.add(H.add(start, a), b) == H.add(start, a + b)
    if a <= b:
        assert H.add(start, a) <= H.add(start, b)


@given(instants)
def test_next_open_is_open_and_nothing_opens_before_it(moment: datetime) -> None:
    first = H.next_open(moment)
    assert first >= moment
    assert H.is_open(first)
    assert H.elapsed(moment, first) == timedelta(0)


def test_elapsed_counts_over_years() -> None:
    # a thread unanswered for three years still has its count (no search bound hit)
    years = hours().elapsed(local(2026, 1, 1, 0, 0), local(2029, 1, 1, 0, 0))
    assert timedelta(hours=3 * 240 * 8) < years < timedelta(hours=3 * 262 * 8)
