"""Business-day calendars and the deadline calculator over REST.

``PUT /v1/calendars/{code}/days`` sets the tenant's own days on a region's calendar (a
municipality's local holidays, an office's closure days); ``GET /v1/calendars/{code}?year=``
lists the merged non-business days with the data version a term records;
``GET /v1/deadlines/compute`` is the calculator a customer-service agent uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.text import Choice
from sealpost.deadlines.calendars import ExtraDay, UnknownCalendar
from sealpost.deadlines.rules import UNITS, VARIANTS, DeadlineRule, compute, zone_for
from sealpost.deadlines.schemas import (
    CALENDAR_PATTERN,
    CalendarDayBody,
    CalendarDaysBody,
    CalendarDaysOut,
    CalendarOut,
    ComputedOut,
    NonBusinessDay,
)
from sealpost.deadlines.service import DeadlineService
from sealpost.errors import InvalidInput, ServiceUnavailable, TooManyRequests, Unauthorized

FIRST_YEAR, LAST_YEAR = 1990, 2100
"""The years a calendar answers for (the holiday data's rules reach no further back or
forward meaningfully; a term starting in 2100 may end up to ten years later)."""

router = APIRouter(
    prefix="/v1",
    tags=["deadlines"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable),
)


@dataclass(frozen=True)
class DeadlinesParts:
    """What the deadlines endpoints use; built by the composition root."""

    service: DeadlineService


async def deadlines_parts(request: Request) -> DeadlinesParts:
    parts: DeadlinesParts = request.app.state.deadlines
    return parts


DeadlinesDep = Annotated[DeadlinesParts, Depends(deadlines_parts)]
CalendarCode = Annotated[
    str,
    Path(
        min_length=2,
        max_length=16,
        pattern=CALENDAR_PATTERN,
        description="ISO 3166-1 or 3166-2: ES, ES-CT, IT-MI, PT-20.",
    ),
]


@router.put(
    "/calendars/{code}/days",
    response_model=CalendarDaysOut,
    responses=problem_responses(UnknownCalendar, InvalidInput),
)
def put_days(
    code: CalendarCode, body: CalendarDaysBody, parts: DeadlinesDep, tenant: TenantDep
) -> CalendarDaysOut:
    """Replace the tenant's own days on this calendar (all of them: send the whole list)."""
    for i, d in enumerate(body.days):
        if not FIRST_YEAR <= d.date.year <= LAST_YEAR + 10:
            raise InvalidInput(f"days[{i}].date: a date from {FIRST_YEAR} to {LAST_YEAR + 10}")
    days = [ExtraDay(d.date, d.name, d.kind) for d in body.days]
    normalised = parts.service.replace_days(tenant.id, code, days)
    return _days(parts, tenant.id, normalised)


@router.get(
    "/calendars/{code}/days",
    response_model=CalendarDaysOut,
    responses=problem_responses(UnknownCalendar),
)
def get_days(code: CalendarCode, parts: DeadlinesDep, tenant: TenantDep) -> CalendarDaysOut:
    """The tenant's own days on this calendar."""
    return _days(parts, tenant.id, parts.service.calendar(tenant.id, code).code)


def _days(parts: DeadlinesParts, tenant_id: str, code: str) -> CalendarDaysOut:
    days = parts.service.repo.days(tenant_id, code)
    return CalendarDaysOut(
        calendar=code,
        days=[CalendarDayBody(date=d.day, name=d.name, kind=d.kind) for d in days.values()],
    )


@router.get(
    "/calendars/{code}",
    response_model=CalendarOut,
    responses=problem_responses(UnknownCalendar),
)
def get_calendar(
    code: CalendarCode,
    parts: DeadlinesDep,
    tenant: TenantDep,
    year: Annotated[int, Query(ge=FIRST_YEAR, le=LAST_YEAR)] = 2026,
) -> CalendarOut:
    """Every non-business day of ``year``: weekends, public holidays, the tenant's days."""
    calendar = parts.service.calendar(tenant.id, code)
    out = []
    day, end = date(year, 1, 1), date(year, 12, 31)
    while day <= end:
        if not calendar.is_business_day(day):
            extra = calendar.extra.get(day)
            public = calendar.holiday(day) if extra is None else None
            if extra is not None:
                kind = "closure" if extra.kind == "closure" else "local_holiday"
                name = extra.name
            elif public is not None:
                kind, name = "holiday", public
            else:
                kind, name = "weekend", "Saturday" if day.weekday() == 5 else "Sunday"
            out.append(NonBusinessDay(date=day, name=name, kind=kind))
        day += timedelta(days=1)
    return CalendarOut(
        calendar=calendar.code,
        name=calendar.name,
        year=year,
        time_zone=str(getattr(zone_for(calendar.code), "key", "UTC")),
        data_version=calendar.data_version,
        non_business_days=out,
    )


@router.get(
    "/deadlines/compute",
    response_model=ComputedOut,
    responses=problem_responses(UnknownCalendar, InvalidInput),
)
def compute_deadline(
    parts: DeadlinesDep,
    tenant: TenantDep,
    calendar: Annotated[str, Query(min_length=2, max_length=16, description="ES-CT, IT-MI...")],
    start: Annotated[
        date, Query(alias="from", description="The trigger's date; the term starts the day after.")
    ],
    amount: Annotated[int, Query(ge=1, le=3650)],
    unit: Annotated[str, Choice(UNITS), Query()] = "business_days",
    starts_from: Annotated[str, Query(pattern="^(delivery|handover|acceptance)$")] = "delivery",
    variant: Annotated[str, Choice(VARIANTS), Query()] = "es_art30",
) -> ComputedOut:
    """When a term ends: with the tenant's own days on the calendar, as a term on a
    communication would be counted (the same function)."""
    if not FIRST_YEAR <= start.year <= LAST_YEAR:
        raise InvalidInput(f"from: a date from {FIRST_YEAR} to {LAST_YEAR}")
    rule = DeadlineRule.from_json(
        {
            "amount": amount,
            "unit": unit,
            "starts_from": starts_from,
            "calendar": calendar,
            "variant": variant,
        }
    )
    cal = parts.service.calendar(tenant.id, calendar)
    zone = zone_for(cal.code)
    trigger = datetime.combine(start, time(12), tzinfo=zone).astimezone(UTC)
    computed = compute(rule, trigger, zone, cal)
    return ComputedOut(**computed.to_json())
