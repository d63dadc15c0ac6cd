"""When a step may go out: its delay after the previous step, then the recipient's send window
(quiet hours and allowed weekdays) in the recipient's time zone.

Every instant in and out is timezone-aware and returned in UTC; local wall times are only
computed, with the IANA time zone database (``zoneinfo``), never stored.

**Delays** (:func:`due_after`):

- ``hours``: elapsed time (24 hours across a spring-forward night is 23 + 1 hours of wall
  clock: the message goes out at 01:00 the next day, not 00:00);
- ``natural_days``: the same local wall time ``amount`` calendar days later (a reminder sent at
  10:00 goes out at 10:00 even when a DST change lies between);
- ``business_days``: the same local wall time on the ``amount``-th business day after the
  previous step's local date, on a :class:`~sealpost.deadlines.calendars.BusinessCalendar`
  (counted from the next day, Ley 39/2015 art. 30).

A wall time that does not exist that day (in the spring-forward gap) is moved forward by the
length of the gap (02:30 in Europe/Madrid on 2027-03-28 is 03:30 CEST); one that happens twice
(in the fall-back overlap) is its first occurrence.  This is RFC 5545 §3.3.5's rule, Python's
``fold=0``, and what java.time does.

**Send windows** (:func:`next_window`): an instant is *allowed* when its local weekday is one
of ``weekdays`` and its local wall time is outside the quiet span ``[quiet_start,
quiet_end)``, which crosses midnight when ``quiet_start > quiet_end`` (21:00 → 09:00: quiet
from 21:00 to 09:00 the next morning).  A step due at a quiet or excluded instant is held to
the first allowed instant after it: the start of the next window, computed on the instants
themselves, so a window that opens inside a spring-forward gap opens when the clocks jump
(03:00 CEST), and an overlap hour counts twice as it does on the recipient's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from sealpost.deadlines.calendars import BusinessCalendar
from sealpost.errors import InvalidInput

DelayUnit = Literal["hours", "natural_days", "business_days"]
MAX_DELAY_HOURS = 24 * 366 * 2
"""The longest delay, in hours (and its days equivalents): two years."""
_SEARCH_DAYS = 800
"""How far :func:`next_window` looks: a window that is always quiet is refused when defined,
so only a window whose every allowed minute falls in DST gaps could get this far."""


class InvalidSchedule(InvalidInput):
    """A send window or delay that cannot be used; 422 naming the field."""

    code = "invalid_schedule"
    title = "The step's delay or send window cannot be used"
    problem_fields = ("field",)

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


@dataclass(frozen=True)
class SendWindow:
    """Allowed weekdays (0 = Monday … 6 = Sunday) and the quiet span of wall time, both in the
    recipient's time zone; no quiet span when both ends are None."""

    quiet_start: time | None
    quiet_end: time | None
    weekdays: frozenset[int]

    def __post_init__(self) -> None:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise InvalidSchedule("window.quiet_hours", "give both the start and the end")
        for end in (self.quiet_start, self.quiet_end):
            if end is not None and end.tzinfo is not None:
                raise InvalidSchedule(
                    "window.quiet_hours", "a wall time, without offset (the recipient's zone)"
                )
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise InvalidSchedule(
                "window.quiet_hours", "start and end are equal: quiet all day or never?"
            )
        if not self.weekdays:
            raise InvalidSchedule("window.weekdays", "at least one weekday")
        if not self.weekdays <= frozenset(range(7)):
            raise InvalidSchedule("window.weekdays", "weekdays are 0 (Monday) to 6 (Sunday)")

    def quiet(self, wall: time) -> bool:
        """Whether the local wall time ``wall`` is in the quiet span."""
        start, end = self.quiet_start, self.quiet_end
        if start is None or end is None:
            return False
        wall = wall.replace(tzinfo=None, fold=0)
        if start < end:
            return start <= wall < end
        return wall >= start or wall < end

    def allows(self, at: datetime, tz: ZoneInfo) -> bool:
        """Whether a message may go out at the instant ``at``."""
        local = _aware(at, "at").astimezone(tz)
        return local.weekday() in self.weekdays and not self.quiet(local.time())


ALWAYS = SendWindow(None, None, frozenset(range(7)))
"""Any time, any day."""


@dataclass(frozen=True)
class Delay:
    """How long after the previous step (or the enrolment, for the first) a step is due;
    ``calendar`` is the business-day calendar's code (``ES-MD``) for ``business_days``."""

    amount: int
    unit: DelayUnit
    calendar: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in get_args(DelayUnit):
            raise InvalidSchedule("delay.unit", "hours, natural_days or business_days")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidSchedule("delay.amount", "a whole number")
        hours = self.amount if self.unit == "hours" else self.amount * 24
        if not 0 <= hours <= MAX_DELAY_HOURS:
            raise InvalidSchedule("delay.amount", "from zero to two years")
        if self.unit == "business_days" and not self.calendar:
            raise InvalidSchedule("delay.calendar", "business days count on a calendar")


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return at


def local_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of the wall time ``wall`` on ``day`` in ``tz``: in a gap, moved
    forward by the gap's length; in an overlap, the first occurrence (module docstring)."""
    return datetime.combine(day, wall.replace(tzinfo=None, fold=0), tz).astimezone(UTC)


def due_after(
    previous: datetime, delay: Delay, tz: ZoneInfo, calendar: BusinessCalendar | None
) -> datetime:
    """When a step with ``delay`` is due after ``previous`` (UTC); the send window then holds
    it if needed (:func:`next_window`)."""
    previous = _aware(previous, "previous").astimezone(UTC)
    if delay.unit == "hours":
        return previous + timedelta(hours=delay.amount)
    local = previous.astimezone(tz)
    if delay.unit == "natural_days":
        day = local.date() + timedelta(days=delay.amount)
    else:
        if calendar is None:
            raise InvalidSchedule("delay.calendar", "business days count on a calendar")
        day = calendar.add_business_days(local.date(), delay.amount)
    return local_instant(day, local.time(), tz)


def _transitions(start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    """Every instant in ``(start, end]`` at which ``tz`` changes its UTC offset (to the
    second), found by comparing offsets every six hours (no zone has changed twice within six
    hours) and bisecting."""
    step = timedelta(hours=6)
    lo = start.replace(microsecond=0)
    while lo < end:
        hi = min(lo + step, end)
        if lo.astimezone(tz).utcoffset() != hi.astimezone(tz).utcoffset():
            a, b = lo, hi
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) / 2
                mid = mid.replace(microsecond=0)
                if mid <= a:
                    break
                if mid.astimezone(tz).utcoffset() == a.astimezone(tz).utcoffset():
                    a = mid
                else:
                    b = mid
            yield b
        lo = hi


def _wall_instants(day: date, wall: time, tz: ZoneInfo) -> Iterator[datetime]:
    """Each instant (0, 1 or 2) whose local date and wall time are ``day`` and ``wall``."""
    for fold in (0, 1):
        local = datetime.combine(day, wall.replace(tzinfo=None, fold=fold), tz)
        instant = local.astimezone(UTC)
        back = instant.astimezone(tz)
        if back.date() == day and back.time() == wall.replace(tzinfo=None, fold=0):
            yield instant


def next_window(at: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """``at`` (in UTC) when the window allows it, else the first allowed instant after it.

    Whether an instant is allowed changes only where the local wall time reaches midnight,
    ``quiet_start`` or ``quiet_end``, or where the zone's offset changes; the answer is the
    first of those instants after ``at`` that is allowed, searched day by day.
    """
    start = _aware(at, "at").astimezone(UTC)
    if window.allows(start, tz):
        return start
    walls = {time(0)}
    if window.quiet_start is not None and window.quiet_end is not None:
        walls |= {window.quiet_start.replace(tzinfo=None), window.quiet_end.replace(tzinfo=None)}
    first_day = start.astimezone(tz).date()
    pool: list[datetime] = []
    scanned = start
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() in window.weekdays:  # no instant of an excluded day is allowed
            pool.extend(i for wall in walls for i in _wall_instants(day, wall, tz) if i > start)
        next_midnight = local_instant(day + timedelta(days=1), time(0), tz)
        horizon = next_midnight + timedelta(hours=6)
        pool.extend(_transitions(scanned, horizon, tz))
        scanned = horizon
        # Instants of later local dates, and later transitions, all come after this bound.
        bound = next_midnight - timedelta(hours=30)
        pool.sort()
        for candidate in pool:
            if candidate > bound:
                break
            if window.allows(candidate, tz):
                return candidate
        pool = [c for c in pool if c > bound]
    raise InvalidSchedule("window", "no allowed time within two years")
