"""Send windows and delays in the recipient's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sealpost.deadlines.calendars import BusinessCalendar


@dataclass(frozen=True)
class SendWindow:
    quiet_start: time | None
    quiet_end: time | None
    weekdays: frozenset[int]


@dataclass(frozen=True)
class Delay:
    amount: int
    unit: Literal["hours", "natural_days", "business_days"]
    calendar: str | None = None


def due_after(
    previous: datetime, delay: Delay, tz: ZoneInfo, calendar: BusinessCalendar | None
) -> datetime:
    if delay.unit == "hours":
        return (previous + timedelta(hours=delay.amount)).astimezone(UTC)
    local = previous.astimezone(tz)
    if delay.unit == "natural_days":
        day = local.date() + timedelta(days=delay.amount)
    else:
        assert calendar is not None
        day = calendar.add_business_days(local.date(), delay.amount)
    return datetime.combine(day, local.time(), tz).astimezone(UTC)


def next_window(at: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    step = at.astimezone(UTC)
    for _ in range(60 * 24 * 8):
        local = step.astimezone(tz)
        if local.weekday() in window.weekdays:
            return step
        step += timedelta(minutes=1)
    return step
