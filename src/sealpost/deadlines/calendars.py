"""Business-day calendars: which days count when a legal term is counted in business days.

Public holidays come from the ``holidays`` package (country and ISO 3166-2 subdivision: Spain
with its 19 autonomous communities, Italy by province, Portugal by district, France...), plus
the days a tenant adds (a municipality's two local holidays, an office's closure days).  Saturdays
and Sundays are never business days (Ley 39/2015 art. 30.2 excludes Saturdays since 2016).

A calendar records its ``data_version`` (the ``holidays`` release and a digest of the tenant's
own days), so that a deadline computed today can be computed again, identically, years later:
the holiday tables of a library change between releases (a region moves a holiday).

Pure and thread-safe: each (country, subdivision, year) table is built once, then only read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from importlib.metadata import version as _installed
from types import MappingProxyType

import holidays

from sealpost.errors import InvalidInput

WEEKEND = frozenset({5, 6})
"""Saturday and Sunday (``date.weekday()``), excluded from business days."""

HOLIDAYS_VERSION = _installed("holidays")
"""The release whose tables a calendar reads (recorded with every deadline)."""

MAX_TERM_DAYS = 3660
"""No term Sealpost counts runs past ten years: a bound on every loop over days."""


class UnknownCalendar(InvalidInput):
    """A calendar code that names no country or subdivision the ``holidays`` data knows."""

    code = "unknown_calendar"
    title = "Unknown business-day calendar"
    problem_fields = ("calendar",)

    def __init__(self, calendar: str, why: str) -> None:
        super().__init__(f"calendar {calendar[:40]!r}: {why}")
        self.calendar = calendar[:40]


@dataclass(frozen=True)
class ExtraDay:
    """A non-business day a tenant adds to a region's calendar."""

    day: date
    name: str
    kind: str = "holiday"
    """``holiday`` (a local public holiday) or ``closure`` (the office is closed)."""


def split_code(code: str) -> tuple[str, str | None]:
    """``"ES-CT"`` → ``("ES", "CT")``; ``"PT"`` → ``("PT", None)``; checked against the data."""
    country, hyphen, subdivision = code.strip().partition("-")
    country = country.upper()
    if hyphen and not subdivision:
        raise UnknownCalendar(code, "a hyphen and no subdivision (ISO 3166-2: ES-CT)")
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise UnknownCalendar(code, f"no holiday data for country {country!r} (ISO 3166-1)")
    if not subdivision:
        return country, None
    known = {str(s).upper(): str(s) for s in supported[country]}
    found = known.get(subdivision.upper())
    if found is None:
        raise UnknownCalendar(
            code,
            f"{country} has no subdivision {subdivision!r} (ISO 3166-2; known: "
            f"{', '.join(sorted(known.values())[:30])}{'...' if len(known) > 30 else ''})",
        )
    return country, found


@lru_cache(maxsize=4096)
def _public_holidays(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    table = holidays.country_holidays(country, subdiv=subdivision, years=year, language="en_US")
    return MappingProxyType({d: str(name) for d, name in sorted(table.items())})


@dataclass(frozen=True)
class BusinessCalendar:
    """One region's business days: weekdays that are neither its public holidays nor a day
    its tenant added."""

    code: str
    """As given, normalised: ``ES-CT``, ``ES``, ``IT-MI``."""
    country: str
    subdivision: str | None
    extra: Mapping[date, ExtraDay] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What a certificate prints: ``ES-CT`` or ``ES-CT + 2 local days``."""
        if not self.extra:
            return self.code
        return f"{self.code} + {len(self.extra)} local day{'s' if len(self.extra) != 1 else ''}"

    @property
    def data_version(self) -> str:
        """``holidays 0.109`` and, when the tenant added days, a digest of them: recorded with
        every deadline so the same count can be repeated."""
        version = f"holidays {HOLIDAYS_VERSION}"
        if not self.extra:
            return version
        lines = "\n".join(
            f"{d.isoformat()}\t{e.kind}\t{e.name}" for d, e in sorted(self.extra.items())
        )
        return f"{version}; local days sha256:{hashlib.sha256(lines.encode()).hexdigest()[:16]}"

    def holiday(self, day: date) -> str | None:
        """The name of the holiday or closure on ``day``, if any (weekends are not named)."""
        added = self.extra.get(day)
        if added is not None:
            return added.name
        return _public_holidays(self.country, self.subdivision, day.year).get(day)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in WEEKEND and self.holiday(day) is None

    def next_business_day(self, day: date) -> date:
        """``day`` itself when it is a business day, else the first one after it."""
        for _ in range(MAX_TERM_DAYS):
            if self.is_business_day(day):
                return day
            day += timedelta(days=1)
        raise InvalidInput(f"calendar {self.code}: no business day within ten years")

    def add_business_days(self, start: date, days: int) -> date:
        """The ``days``-th business day after ``start``, counted from the day after it (Ley
        39/2015 art. 30.2 and 30.3: a term starts the day after the notification)."""
        if days < 0 or days > MAX_TERM_DAYS:
            raise InvalidInput(f"a term of {days} business days is out of range")
        day, counted = start, 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_business_day(day):
                counted += 1
        return day

    def business_days_before(self, end: date, days: int) -> date:
        """The business day ``days`` business days before ``end`` (``end`` itself for 0): when
        a reminder "two business days before the end" is due."""
        if days < 0 or days > MAX_TERM_DAYS:
            raise InvalidInput(f"{days} business days before a term's end is out of range")
        day, counted = end, 0
        while counted < days:
            day -= timedelta(days=1)
            if self.is_business_day(day):
                counted += 1
        return day

    def non_business_days(self, start: date, end: date) -> Iterator[tuple[date, str]]:
        """Each day in ``[start, end]`` that does not count, with why (for a certificate)."""
        day = start
        while day <= end:
            if not self.is_business_day(day):
                yield day, self.holiday(day) or ("Saturday" if day.weekday() == 5 else "Sunday")
            day += timedelta(days=1)


def normalised_code(code: str) -> str:
    """``"es-ct"`` → ``"ES-CT"`` as the data spells it; :class:`UnknownCalendar` otherwise."""
    country, subdivision = split_code(code)
    return country if subdivision is None else f"{country}-{subdivision}"


def calendar_for(code: str, extra: Mapping[date, ExtraDay] | None = None) -> BusinessCalendar:
    """The calendar of ``code`` (ISO 3166-1 country, or ISO 3166-2 ``country-subdivision``)
    with the tenant's ``extra`` days; :class:`UnknownCalendar` (422) for a code no data names."""
    country, subdivision = split_code(code)
    normalised = country if subdivision is None else f"{country}-{subdivision}"
    return BusinessCalendar(normalised, country, subdivision, MappingProxyType(dict(extra or {})))


def supported() -> dict[str, list[str]]:
    """Every country code with its subdivision codes, as the ``holidays`` data knows them."""
    return {
        c: sorted(str(s) for s in subs) for c, subs in holidays.list_supported_countries().items()
    }
