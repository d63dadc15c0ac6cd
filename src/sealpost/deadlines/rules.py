"""Deadline rules and their computation: "N business / natural days from the handover, on
calendar X", counted the way the law of that calendar counts them.

Pure: no I/O besides reading the system's ``zone.tab`` once (which IANA zone a country uses).

Variants (``DeadlineRule.variant``):

``es_art30`` (default)
    Ley 39/2015 art. 30: the term starts the day after the trigger (30.3, 30.4); in business
    days, Saturdays, Sundays and the calendar's holidays do not count (30.2); a term in natural
    days that ends on a non-business day moves to the next business day (30.5).
``strict_natural``
    Natural days counted from the day after the trigger, ending where they end: no day
    excluded, no roll-forward (contractual terms that say so).
``it_art155_cpc``
    Codice di procedura civile art. 155: natural days, the first day excluded; a term ending on
    a holiday or (since law 263/2005) a Saturday moves to the next working day.  Natural days
    only.
``fr_cpc_642``
    Code de procédure civile art. 641-642: natural days from the day after the trigger; a term
    ending on a Saturday, Sunday or public holiday is extended to the next working day.
    Natural days only.

The last two count exactly as ``es_art30`` does for natural days; they exist so that the rule
text a certificate prints cites the provision the term actually follows.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sealpost.deadlines.calendars import MAX_TERM_DAYS, BusinessCalendar, calendar_for
from sealpost.errors import InvalidInput
from sealpost.ledger.records import format_time as _iso

Unit = Literal["business_days", "natural_days"]
StartsFrom = Literal["delivery", "handover", "acceptance"]
Variant = Literal["es_art30", "strict_natural", "it_art155_cpc", "fr_cpc_642"]

UNITS: tuple[str, ...] = ("business_days", "natural_days")
STARTS_FROM: tuple[str, ...] = ("delivery", "handover", "acceptance")
VARIANTS: tuple[str, ...] = ("es_art30", "strict_natural", "it_art155_cpc", "fr_cpc_642")

_NATURAL_ONLY = frozenset({"strict_natural", "it_art155_cpc", "fr_cpc_642"})
_PROVISION = {
    "es_art30": "Ley 39/2015 art. 30",
    "strict_natural": "natural days, no roll-forward",
    "it_art155_cpc": "c.p.c. art. 155",
    "fr_cpc_642": "CPC art. 642",
}
_TRIGGER_WORDS = {
    "delivery": "the delivery to the recipient's mail server",
    "handover": "the handover",
    "acceptance": "the acceptance",
}


@dataclass(frozen=True)
class DeadlineRule:
    """A term: ``amount`` ``unit`` counted from ``starts_from`` on the calendar ``calendar``."""

    amount: int
    unit: Unit
    starts_from: StartsFrom
    calendar: str
    """ISO 3166-1 country or ISO 3166-2 subdivision code: ``ES-CT``, ``IT-MI``, ``PT``."""
    variant: Variant = "es_art30"

    def __post_init__(self) -> None:
        if not 1 <= self.amount <= 3650:
            raise InvalidInput(f"deadline amount {self.amount} is out of range (1 to 3650)")
        if self.unit not in UNITS:
            raise InvalidInput(f"deadline unit {self.unit!r}: one of {', '.join(UNITS)}")
        if self.starts_from not in STARTS_FROM:
            raise InvalidInput(
                f"deadline starts_from {self.starts_from!r}: one of {', '.join(STARTS_FROM)}"
            )
        if self.variant not in VARIANTS:
            raise InvalidInput(f"deadline variant {self.variant!r}: one of {', '.join(VARIANTS)}")
        if self.variant in _NATURAL_ONLY and self.unit != "natural_days":
            raise InvalidInput(f"deadline variant {self.variant} counts natural days only")

    def to_json(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "unit": self.unit,
            "starts_from": self.starts_from,
            "calendar": self.calendar,
            "variant": self.variant,
        }

    @classmethod
    def from_json(cls, obj: Any) -> DeadlineRule:
        if not isinstance(obj, dict):
            raise InvalidInput("a deadline rule is an object")
        try:
            return cls(
                amount=int(obj["amount"]),
                unit=obj["unit"],
                starts_from=obj["starts_from"],
                calendar=str(obj["calendar"]),
                variant=obj.get("variant", "es_art30"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"a deadline rule needs amount, unit, starts_from: {exc}") from None

    @property
    def term(self) -> str:
        """``10-business-day`` or ``15-natural-day``: as in "the 10-business-day term"."""
        return f"{self.amount}-{'business' if self.unit == 'business_days' else 'natural'}-day"


_HEADER = re.compile(
    r"^\s*(\d{1,4})\s+(business_days|natural_days)\s+from\s+(delivery|handover|acceptance)"
    r"\s+on\s+([A-Za-z]{2}(?:-[A-Za-z0-9]{1,6})?)(?:\s+([a-z0-9_]{1,20}))?\s*$"
)


def parse_header(text: str) -> DeadlineRule:
    """A rule as the ``Sealpost-Deadline`` SMTP header writes it:
    ``10 business_days from handover on ES-CT [variant]``."""
    found = _HEADER.match(text)
    if found is None:
        raise InvalidInput(
            "write it as '<amount> business_days|natural_days from delivery|handover|"
            "acceptance on <calendar> [variant]', e.g. '10 business_days from handover on ES-CT'"
        )
    amount, unit, starts_from, calendar, variant = found.groups()
    return DeadlineRule.from_json(
        {
            "amount": amount,
            "unit": unit,
            "starts_from": starts_from,
            "calendar": calendar,
            "variant": variant or "es_art30",
        }
    )


def check_trigger(rule: DeadlineRule, *, pickup: bool, basic: bool = False) -> None:
    """Refuse a rule whose trigger the delivery never records (the term would never run)."""
    if not pickup and rule.starts_from != "delivery":
        raise InvalidInput(
            f"deadline.starts_from: {rule.starts_from} needs delivery: pickup (a direct email "
            "is delivered, never handed over or accepted)"
        )
    if pickup and rule.starts_from == "delivery":
        raise InvalidInput(
            "deadline.starts_from: delivery is for direct email; a pickup starts a term from "
            "the handover or the acceptance"
        )
    if pickup and basic and rule.starts_from == "acceptance":
        raise InvalidInput(
            "deadline.starts_from: acceptance, but a basic pickup has no acceptance (handover)"
        )


@dataclass(frozen=True)
class SkippedDay:
    """A day that did not count (business days) or that the end rolled over (natural days)."""

    day: date
    why: str


@dataclass(frozen=True)
class ComputedDeadline:
    """The end of a term and everything needed to compute it again, identically."""

    rule: DeadlineRule
    trigger_at: datetime
    trigger_on: date
    """The trigger's local date: the term starts the day after it."""
    ends_on: date
    ends_at: datetime
    """The last instant of ``ends_on`` in ``time_zone`` (23:59:59.999), in UTC."""
    time_zone: str
    calendar_name: str
    data_version: str
    skipped: tuple[SkippedDay, ...] = field(default=())

    @property
    def text(self) -> str:
        """The plain-language line a certificate prints: a computed term, not an event."""
        return describe(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.to_json(),
            "trigger_at": _iso(self.trigger_at),
            "trigger_on": self.trigger_on.isoformat(),
            "ends_on": self.ends_on.isoformat(),
            "ends_at": _iso(self.ends_at),
            "time_zone": self.time_zone,
            "calendar_name": self.calendar_name,
            "data_version": self.data_version,
            "skipped": [{"date": s.day.isoformat(), "why": s.why} for s in self.skipped],
            "text": self.text,
        }


def long_date(day: date) -> str:
    """``3 Dec 2026``: unambiguous in every locale a certificate is read in."""
    return f"{day.day} {day.strftime('%b')} {day.year}"


def describe(computed: ComputedDeadline) -> str:
    """ "The 10-business-day term in ES-CT (holidays 0.109) counted from the handover on
    3 Dec 2026 ends on 18 Dec 2026.\""""
    rule = computed.rule
    rolled = ""
    if rule.unit == "natural_days" and computed.skipped:
        rolled = f", moved past {len(computed.skipped)} non-business day" + (
            "s" if len(computed.skipped) != 1 else ""
        )
    return (
        f"The {rule.term} term in {computed.calendar_name} ({computed.data_version}; "
        f"{_PROVISION[rule.variant]}) counted from {_TRIGGER_WORDS[rule.starts_from]} on "
        f"{long_date(computed.trigger_on)} ends on {long_date(computed.ends_on)}{rolled}."
    )


def end_date(
    rule: DeadlineRule, trigger_on: date, calendar: BusinessCalendar
) -> tuple[date, tuple[SkippedDay, ...]]:
    """The last day of the term started by an event on ``trigger_on``, and the days skipped."""
    if rule.unit == "business_days":
        ends = calendar.add_business_days(trigger_on, rule.amount)
        skipped = calendar.non_business_days(trigger_on + timedelta(days=1), ends)
        return ends, tuple(SkippedDay(d, why) for d, why in skipped)
    if rule.amount > MAX_TERM_DAYS:
        raise InvalidInput(f"a term of {rule.amount} natural days is out of range")
    nominal = trigger_on + timedelta(days=rule.amount)
    if rule.variant == "strict_natural":
        return nominal, ()
    ends = calendar.next_business_day(nominal)
    if ends == nominal:
        return ends, ()
    rolled = calendar.non_business_days(nominal, ends - timedelta(days=1))
    return ends, tuple(SkippedDay(d, why) for d, why in rolled)


def end_of_day(day: date, zone: tzinfo) -> datetime:
    """23:59:59.999 of ``day`` in ``zone``, in UTC (a DST change that day is respected)."""
    local = datetime.combine(day, time(23, 59, 59, 999000), tzinfo=zone)
    return local.astimezone(UTC)


def compute(
    rule: DeadlineRule,
    trigger_at: datetime,
    tz: tzinfo | None = None,
    calendar: BusinessCalendar | None = None,
) -> ComputedDeadline:
    """The term ``rule`` gives for a trigger at ``trigger_at`` (an aware instant).

    ``tz`` defaults to the calendar region's zone (:func:`zone_for`): the trigger's local date
    is that region's date, so a handover at 23:30 UTC on 31 Dec is 1 Jan in Madrid.
    ``calendar`` defaults to the public calendar of ``rule.calendar`` (pass one with the
    tenant's own days)."""
    if trigger_at.tzinfo is None:
        raise InvalidInput("a deadline's trigger time needs a time zone")
    if calendar is None:
        calendar = calendar_for(rule.calendar)
    zone = tz if tz is not None else zone_for(calendar.code)
    trigger_on = trigger_at.astimezone(zone).date()
    ends_on, skipped = end_date(rule, trigger_on, calendar)
    return ComputedDeadline(
        rule=rule,
        trigger_at=trigger_at.astimezone(UTC),
        trigger_on=trigger_on,
        ends_on=ends_on,
        ends_at=end_of_day(ends_on, zone),
        time_zone=str(getattr(zone, "key", None) or zone.tzname(None) or "UTC"),
        calendar_name=calendar.name,
        data_version=calendar.data_version,
        skipped=skipped,
    )


# -- the time zone of a region -------------------------------------------------------------

_ZONES = {
    "ES": "Europe/Madrid",
    "ES-CN": "Atlantic/Canary",
    "ES-CE": "Africa/Ceuta",
    "ES-ML": "Africa/Ceuta",
    "PT": "Europe/Lisbon",
    "PT-20": "Atlantic/Azores",
    "PT-30": "Atlantic/Madeira",
    "FR": "Europe/Paris",
    "IT": "Europe/Rome",
    "RO": "Europe/Bucharest",
    "DE": "Europe/Berlin",
    "BE": "Europe/Brussels",
    "NL": "Europe/Amsterdam",
    "AT": "Europe/Vienna",
    "CH": "Europe/Zurich",
    "IE": "Europe/Dublin",
    "GB": "Europe/London",
    "PL": "Europe/Warsaw",
    "GR": "Europe/Athens",
    "MX": "America/Mexico_City",
    "AR": "America/Argentina/Buenos_Aires",
    "CO": "America/Bogota",
    "CL": "America/Santiago",
    "PE": "America/Lima",
}
"""Regions whose zone is not simply their country's first in ``zone.tab`` (or worth pinning)."""


@cache
def _zone_tab() -> dict[str, str]:
    """Each country's first zone in the IANA ``zone.tab`` (its most populous region)."""
    found: dict[str, str] = {}
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / "zone.tab"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) >= 3:
                found.setdefault(parts[0].upper(), parts[2])
        break
    return found


def zone_name_for(code: str) -> str:
    """The IANA zone of an ISO 3166-1/-2 region: the subdivision's own (``ES-CN`` →
    ``Atlantic/Canary``), else the country's, else ``UTC``."""
    code = code.strip().upper()
    country = code.partition("-")[0]
    return _ZONES.get(code) or _ZONES.get(country) or _zone_tab().get(country) or "UTC"


def zone_for(code: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(zone_name_for(code))
    except zoneinfo.ZoneInfoNotFoundError:
        return zoneinfo.ZoneInfo("UTC") if "UTC" in zoneinfo.available_timezones() else UTC
