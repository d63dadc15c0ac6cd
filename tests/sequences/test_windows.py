"""Delays and send windows in the recipient's time zone, across DST changes: a step that falls
in quiet hours or on an excluded weekday is held to the next window."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.deadlines.calendars import calendar_for
from sealpost.errors import InvalidInput
from sealpost.sequences.windows import (
    ALWAYS,
    Delay,
    InvalidSchedule,
    SendWindow,
    due_after,
    next_window,
)

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
CHICAGO = ZoneInfo("America/Chicago")
EVERY_DAY = frozenset(range(7))
WORKDAYS = frozenset(range(5))
NIGHTS = SendWindow(time(21), time(9), EVERY_DAY)
"""Quiet from 21:00 to 09:00 the next morning."""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


# --- quiet hours across DST changes -----------------------------------------------------------


def test_madrid_autumn_a_step_due_in_the_night_goes_out_at_nine_on_the_new_offset() -> None:
    # Sunday 2026-10-25 03:00 CEST becomes 02:00 CET: 09:00 that morning is 08:00 UTC, not 07:00.
    due = local(MADRID, 2026, 10, 24, 22, 15)
    held = next_window(due, NIGHTS, MADRID)
    assert held == utc(2026, 10, 25, 8, 0)
    assert held.astimezone(MADRID).strftime("%H:%M %Z") == "09:00 CET"
    assert next_window(held, NIGHTS, MADRID) == held
    assert next_window(held - timedelta(seconds=1), NIGHTS, MADRID) == held


def test_madrid_spring_a_step_due_in_the_night_goes_out_at_nine_on_the_new_offset() -> None:
    # Sunday 2027-03-28 02:00 CET becomes 03:00 CEST: 09:00 that morning is 07:00 UTC.
    held = next_window(local(MADRID, 2027, 3, 27, 23, 0), NIGHTS, MADRID)
    assert held == utc(2027, 3, 28, 7, 0)
    assert held.astimezone(MADRID).strftime("%H:%M %Z") == "09:00 CEST"


def test_madrid_spring_a_window_opening_inside_the_gap_opens_when_the_clocks_jump() -> None:
    # Quiet 01:00-02:30; 02:30 does not exist on 2027-03-28: the window opens at 03:00 CEST.
    window = SendWindow(time(1), time(2, 30), EVERY_DAY)
    held = next_window(local(MADRID, 2027, 3, 28, 1, 10), window, MADRID)
    assert held == utc(2027, 3, 28, 1, 0)
    assert held.astimezone(MADRID).strftime("%H:%M %Z") == "03:00 CEST"


def test_madrid_a_quiet_span_inside_the_gap_holds_nothing_that_night() -> None:
    # Quiet 02:10-02:40 never happens on 2027-03-28: 01:59 CET is followed by 03:00 CEST.
    window = SendWindow(time(2, 10), time(2, 40), EVERY_DAY)
    at = local(MADRID, 2027, 3, 28, 3, 0)
    assert next_window(at, window, MADRID) == at.astimezone(UTC)


def test_mexico_city_has_no_dst_since_2022_and_nine_stays_fifteen_utc() -> None:
    # Mexico abolished DST in 2022 (tzdata 2022f): UTC-6 all year, whatever the US does.
    assert {local(MEXICO, 2026, month, 15).utcoffset() for month in range(1, 13)} == {
        timedelta(hours=-6)
    }
    for night in (date(2026, 4, 4), date(2026, 10, 24), date(2027, 3, 27), date(2026, 10, 31)):
        due = local(MEXICO, night.year, night.month, night.day, 23, 30)
        next_day = night + timedelta(days=1)
        assert next_window(due, NIGHTS, MEXICO) == utc(
            next_day.year, next_day.month, next_day.day, 15, 0
        )


def test_chicago_autumn_and_spring_changes() -> None:
    # 2026-11-01 02:00 CDT becomes 01:00 CST; 2027-03-14 02:00 CST becomes 03:00 CDT.
    assert next_window(local(CHICAGO, 2026, 10, 31, 22), NIGHTS, CHICAGO) == utc(2026, 11, 1, 15)
    assert next_window(local(CHICAGO, 2027, 3, 13, 22), NIGHTS, CHICAGO) == utc(2027, 3, 14, 14)
    gap = SendWindow(time(1), time(2, 30), EVERY_DAY)
    held = next_window(local(CHICAGO, 2027, 3, 14, 1, 45), gap, CHICAGO)
    assert held.astimezone(CHICAGO).strftime("%H:%M %Z") == "03:00 CDT"


def test_chicago_the_repeated_hour_is_quiet_twice_as_on_the_recipients_clock() -> None:
    window = SendWindow(time(1), time(1, 30), EVERY_DAY)
    first = local(CHICAGO, 2026, 11, 1, 1, 10, fold=0)  # 06:10 UTC, CDT
    second = local(CHICAGO, 2026, 11, 1, 1, 10, fold=1)  # 07:10 UTC, CST
    assert next_window(first, window, CHICAGO) == utc(2026, 11, 1, 6, 30)
    assert next_window(second, window, CHICAGO) == utc(2026, 11, 1, 7, 30)
    assert next_window(local(CHICAGO, 2026, 11, 1, 1, 40), window, CHICAGO) == utc(
        2026, 11, 1, 6, 40
    )


# --- weekdays --------------------------------------------------------------------------------


def test_office_hours_on_workdays_hold_a_friday_evening_step_to_monday_morning() -> None:
    office = SendWindow(time(18), time(9), WORKDAYS)
    friday_evening = local(MADRID, 2026, 12, 4, 19, 30)
    assert next_window(friday_evening, office, MADRID) == local(MADRID, 2026, 12, 7, 9).astimezone(
        UTC
    )
    saturday = local(MADRID, 2026, 12, 5, 12)
    assert next_window(saturday, office, MADRID) == local(MADRID, 2026, 12, 7, 9).astimezone(UTC)
    tuesday = local(MADRID, 2026, 12, 8, 12)
    assert next_window(tuesday, office, MADRID) == tuesday.astimezone(UTC)


def test_weekdays_without_quiet_hours_open_at_local_midnight() -> None:
    weekends = SendWindow(None, None, frozenset({5, 6}))
    assert next_window(local(MEXICO, 2026, 12, 9, 15), weekends, MEXICO) == local(
        MEXICO, 2026, 12, 12, 0
    ).astimezone(UTC)
    assert next_window(utc(2026, 12, 9, 15, 0), ALWAYS, MADRID) == utc(2026, 12, 9, 15, 0)


# --- delays ----------------------------------------------------------------------------------


def test_natural_days_keep_the_wall_time_and_hours_keep_the_elapsed_time() -> None:
    saturday_ten = local(MADRID, 2027, 3, 27, 10)  # 09:00 UTC, CET
    one_day = due_after(saturday_ten, Delay(1, "natural_days"), MADRID, None)
    assert one_day == utc(2027, 3, 28, 8)  # 10:00 CEST
    assert due_after(saturday_ten, Delay(24, "hours"), MADRID, None) == utc(2027, 3, 28, 9)
    autumn = due_after(local(MADRID, 2026, 10, 24, 10), Delay(1, "natural_days"), MADRID, None)
    assert autumn.astimezone(MADRID).strftime("%d %H:%M %Z") == "25 10:00 CET"


def test_a_wall_time_in_the_gap_moves_forward_by_the_gap_and_an_overlap_takes_the_first() -> None:
    gap = due_after(local(MADRID, 2027, 3, 27, 2, 30), Delay(1, "natural_days"), MADRID, None)
    assert gap.astimezone(MADRID).strftime("%H:%M %Z") == "03:30 CEST"
    overlap = due_after(local(MADRID, 2026, 10, 24, 2, 30), Delay(1, "natural_days"), MADRID, None)
    assert overlap == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first of the two


def test_business_days_on_a_regional_calendar_keep_the_wall_time() -> None:
    # ES-MD: Monday 7 Dec 2026 (Constitution Day moved) and Tuesday 8 Dec are holidays.
    friday = local(MADRID, 2026, 12, 4, 10)
    due = due_after(friday, Delay(2, "business_days", "ES-MD"), MADRID, calendar_for("ES-MD"))
    assert due == local(MADRID, 2026, 12, 10, 10).astimezone(UTC)
    with pytest.raises(InvalidSchedule):
        due_after(friday, Delay(2, "business_days", "ES-MD"), MADRID, None)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: SendWindow(time(9), time(9), EVERY_DAY), "window.quiet_hours"),
        (lambda: SendWindow(time(9), None, EVERY_DAY), "window.quiet_hours"),
        (lambda: SendWindow(None, None, frozenset()), "window.weekdays"),
        (lambda: SendWindow(None, None, frozenset({7})), "window.weekdays"),
        (lambda: Delay(-1, "hours"), "delay.amount"),
        (lambda: Delay(3, "weeks"), "delay.unit"),  # type: ignore[arg-type]
        (lambda: Delay(3, "business_days"), "delay.calendar"),
        (lambda: Delay(10_000, "natural_days"), "delay.amount"),
    ],
)
def test_a_window_or_delay_that_cannot_work_is_a_422_naming_the_field(
    make: object, field: str
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        make()  # type: ignore[operator]
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 422
    assert caught.value.field == field


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_window(datetime(2026, 12, 7, 10), NIGHTS, MADRID)


# --- properties against brute force ----------------------------------------------------------

ZONES = [
    "Europe/Madrid",
    "America/Mexico_City",
    "America/Chicago",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # changes at midnight: some days have no 00:00
    "America/Havana",  # changes at midnight too
    "Asia/Kolkata",
    "UTC",
]
CHANGES = [
    datetime(2026, 3, 8),
    datetime(2026, 4, 5),
    datetime(2026, 9, 6),
    datetime(2026, 10, 4),
    datetime(2026, 10, 25),
    datetime(2026, 11, 1),
    datetime(2027, 3, 14),
    datetime(2027, 3, 28),
    datetime(2027, 4, 4),
]


def allowed(instant: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    """The rule, written out independently of the module."""
    wall = instant.astimezone(tz)
    if wall.weekday() not in window.weekdays:
        return False
    if window.quiet_start is None or window.quiet_end is None:
        return True
    minutes = wall.hour * 60 + wall.minute
    qs = window.quiet_start.hour * 60 + window.quiet_start.minute
    qe = window.quiet_end.hour * 60 + window.quiet_end.minute
    quiet = qs <= minutes < qe if qs < qe else (minutes >= qs or minutes < qe)
    return not quiet


minute_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    if draw(st.booleans()):
        return SendWindow(None, None, days)
    start = draw(minute_times)
    end = draw(minute_times.filter(lambda t: t != start))
    return SendWindow(start, end, days)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    base = draw(st.sampled_from(CHANGES))
    minutes = draw(st.integers(-3 * 24 * 60, 3 * 24 * 60))
    return (base + timedelta(minutes=minutes)).replace(tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(at=instants(), window=windows(), zone=st.sampled_from(ZONES))
def test_the_held_time_is_the_first_allowed_minute_at_or_after_the_due_time(
    at: datetime, window: SendWindow, zone: str
) -> None:
    tz = ZoneInfo(zone)
    result = next_window(at, window, tz)
    assert result.tzinfo is UTC
    assert result >= at
    assert allowed(result, window, tz)
    assert window.allows(result, tz)
    brute = at
    while not allowed(brute, window, tz):
        brute += timedelta(minutes=1)
        assert brute - at < timedelta(days=9)
    assert result == brute


@settings(max_examples=200, deadline=None)
@given(
    at=instants(),
    amount=st.integers(0, 40),
    unit=st.sampled_from(["hours", "natural_days"]),
    zone=st.sampled_from(ZONES),
)
def test_a_delay_never_goes_back_in_time_and_days_keep_the_wall_time_when_it_exists(
    at: datetime, amount: int, unit: str, zone: str
) -> None:
    tz = ZoneInfo(zone)
    due = due_after(at, Delay(amount, unit), tz, None)  # type: ignore[arg-type]
    assert due >= at and due.tzinfo is UTC
    if unit == "hours":
        assert due - at == timedelta(hours=amount)
        return
    before, after = at.astimezone(tz), due.astimezone(tz)
    assert after.date() == before.date() + timedelta(days=amount) or after.time() < time(3)
    wall = before.replace(tzinfo=None, fold=0)
    expected = datetime.combine(before.date() + timedelta(days=amount), wall.time())
    exists = expected.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if exists == expected:
        assert after.replace(tzinfo=None) == expected
