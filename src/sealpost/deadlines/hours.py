"""Business hours: when a service is open, and time counted only while it is.

A :class:`ServiceHours` is, for each weekday, the spans of wall time a service works (e.g.
Monday to Friday 09:00-14:00 and 15:00-18:00: the lunch break is the gap between two spans),
in an IANA time zone, closed on the public holidays and the tenant's own days of a
:class:`~sealpost.deadlines.calendars.BusinessCalendar`.  A weekday without spans is closed;
a Saturday with spans is open (the calendar's weekend rule is for legal terms, not for a call
centre that works Saturdays), unless it is a holiday.

Everything is computed on instants (UTC) with ``zoneinfo``: each day's spans are turned into
the instants they start and end that day, so a span crossing a DST change is as long as it
really is (09:00-14:00 on a spring-forward day of a zone whose jump falls at 10:00 is four
hours), and a wall time inside a spring-forward gap is moved forward by the gap's length
(02:30 on the night Madrid jumps from 02:00 to 03:00 is 03:30 CEST: ``fold=0``, RFC 5545
§3.3.5, as ``sequences.windows`` does).  Business time is real elapsed
time inside open spans: :func:`ServiceHours.add` and :func:`ServiceHours.elapsed` are inverse
(``elapsed(t, add(t, d)) == d``), which the property tests check.

Pure and I/O-free; the archive's unanswered-mail clock (``archive.sla``) uses it, and legal
terms counted in hours could.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sealpost.deadlines.calendars import BusinessCalendar
from sealpost.errors import InvalidInput

MAX_SEARCH_DAYS = 800
"""How far any search runs (a bound on every loop): a service open at least one minute every
two years always answers; one never open is refused when defined."""

MAX_SPANS = 24
"""Spans in one day (a bound on the work of every count)."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Span = tuple[time, time]


class InvalidHours(InvalidInput):
    """Service hours that cannot be used; 422 naming the field."""

    code = "invalid_service_hours"
    title = "The service hours cannot be used"
    problem_fields = ("field",)

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone ``name`` (``Europe/Madrid``); 422 for a name the database lacks."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidHours(field, f"{name[:64]!r} is not an IANA time zone") from None


def parse_spans(week: Mapping[str, Sequence[Sequence[str]]]) -> dict[int, tuple[Span, ...]]:
    """``{"mon": [["09:00", "14:00"], ["15:00", "18:00"]], ...}`` → spans by weekday number,
    checked: each ``start < end`` within one day (a span never crosses midnight), sorted, not
    overlapping; unknown day names refused."""
    spans: dict[int, tuple[Span, ...]] = {}
    for key, items in week.items():
        name = key.strip().lower()[:3]
        if name not in WEEKDAYS:
            raise InvalidHours(f"hours.{key[:10]}", "a weekday: mon, tue, wed, thu, fri, sat, sun")
        if len(items) > MAX_SPANS:
            raise InvalidHours(f"hours.{name}", f"at most {MAX_SPANS} spans a day")
        parsed: list[Span] = []
        for i, item in enumerate(items):
            where = f"hours.{name}.{i}"
            if len(item) != 2:
                raise InvalidHours(where, 'a span is ["HH:MM", "HH:MM"]')
            try:
                start = time.fromisoformat(item[0])
                end = time.max if item[1] == "24:00" else time.fromisoformat(item[1])
            except (TypeError, ValueError):
                raise InvalidHours(where, 'a span is ["HH:MM", "HH:MM"]') from None
            if start.tzinfo is not None or end.tzinfo is not None:
                raise InvalidHours(where, "a wall time, without offset (the policy's zone)")
            if not start < end:
                raise InvalidHours(where, "the start comes before the end, within one day")
            parsed.append((start, end))
        parsed.sort()
        for (_, end), (start, _) in pairwise(parsed):
            if start < end:
                raise InvalidHours(f"hours.{name}", "spans overlap")
        spans[WEEKDAYS.index(name)] = tuple(parsed)
    return spans


def spans_json(spans: Mapping[int, Sequence[Span]]) -> dict[str, list[list[str]]]:
    """The inverse of :func:`parse_spans` (what the API shows and the table stores)."""
    return {
        WEEKDAYS[d]: [[s.strftime("%H:%M"), _end(e)] for s, e in spans[d]]
        for d in sorted(spans)
        if spans[d]
    }


def _end(end: time) -> str:
    return "24:00" if end == time.max else end.strftime("%H:%M")


@dataclass(frozen=True)
class ServiceHours:
    """When a service is open: spans of wall time per weekday in ``tz``, minus ``calendar``'s
    holidays (and the tenant's own days).  See the module docstring."""

    tz: ZoneInfo
    spans: Mapping[int, tuple[Span, ...]]
    calendar: BusinessCalendar | None = None

    def __post_init__(self) -> None:
        if not any(self.spans.get(d) for d in range(7)):
            raise InvalidHours("hours", "open at least one span on one weekday")

    # -- the open intervals -------------------------------------------------------------

    def _instant(self, day: date, wall: time) -> datetime:
        if wall == time.max:  # the end of the day: midnight of the next
            local = datetime.combine(day + timedelta(days=1), time(0), self.tz)
        else:
            local = datetime.combine(day, wall, self.tz)
        return local.astimezone(UTC)

    def day_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The open intervals ``[start, end)`` of one local day, as UTC instants."""
        if self.calendar is not None and self.calendar.holiday(day) is not None:
            return []
        found = []
        for start, end in self.spans.get(day.weekday(), ()):
            a, b = self._instant(day, start), self._instant(day, end)
            if a < b:  # a span swallowed whole by a spring-forward gap is empty
                found.append((a, b))
        return found

    def intervals(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open intervals that end after ``moment``, in order (from its local day on),
        without end; :class:`InvalidHours` after ``MAX_SEARCH_DAYS`` days closed in a row."""
        _aware(moment)
        day = moment.astimezone(self.tz).date() - timedelta(days=1)
        closed = 0
        while closed < MAX_SEARCH_DAYS:
            found = self.day_intervals(day)
            closed = 0 if found else closed + 1
            for a, b in found:
                if b > moment:
                    yield a, b
            day += timedelta(days=1)
        raise InvalidHours("hours", f"not open within {MAX_SEARCH_DAYS} days")

    # -- the kit -----------------------------------------------------------------------

    def is_open(self, moment: datetime) -> bool:
        """Whether ``moment`` lies in an open span (start included, end excluded)."""
        for a, _ in self.intervals(moment):
            return a <= moment
        return False  # pragma: no cover - intervals() raises first

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when open, else the instant the service next opens."""
        for a, _ in self.intervals(moment):
            return max(a, moment).astimezone(UTC)
        raise AssertionError("unreachable")  # pragma: no cover

    def add(self, moment: datetime, business: timedelta) -> datetime:
        """The instant when ``business`` of open time has passed since ``moment`` (counting
        starts at the next opening when closed; zero is ``moment`` itself).  A total reached
        exactly at a closing is that closing instant, not the next opening."""
        if business < timedelta(0):
            raise InvalidHours("minutes", "a business duration is not negative")
        if business == timedelta(0):
            return moment.astimezone(UTC)
        left = business
        for a, b in self.intervals(moment):
            start = max(a, moment)
            if left <= b - start:
                return (start + left).astimezone(UTC)
            left -= b - start
        raise AssertionError("unreachable")  # pragma: no cover

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open time between two instants (zero when ``end`` is not after ``start``)."""
        _aware(end)
        total = timedelta(0)
        if end <= start:
            return total
        for a, b in self.intervals(start):
            if a >= end:
                break
            total += min(b, end) - max(a, start)
        return total

    def add_minutes(self, moment: datetime, minutes: int) -> datetime:
        return self.add(moment, timedelta(minutes=minutes))

    def elapsed_minutes(self, start: datetime, end: datetime) -> float:
        return self.elapsed(start, end) / timedelta(minutes=1)


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("an aware instant (with its offset), never a naive wall time")
