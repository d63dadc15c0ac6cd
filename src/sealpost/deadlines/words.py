"""Deadline records in plain words, for certificates: a computed term and the passing of
time, never an act of the recipient (what the record shows, and no more)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sealpost.deadlines.rules import long_date

EVENTS = ("DeadlineSet", "DeadlineApproaching", "DeadlinePassed")


def _day(text: Any) -> str:
    try:
        return long_date(date.fromisoformat(str(text)))
    except ValueError:
        return str(text)


def _term(rule: Any) -> str:
    if not isinstance(rule, Mapping):
        return "the term"
    unit = "business" if rule.get("unit") == "business_days" else "natural"
    return f"the {rule.get('amount')}-{unit}-day term in {rule.get('calendar')}"


def summary(event: str, details: Mapping[str, Any]) -> str | None:
    """One line for a certificate, or None when ``event`` is not a deadline record."""
    if event == "DeadlineSet":
        computed = details.get("deadline")
        text = computed.get("text") if isinstance(computed, Mapping) else None
        return f"Computed term (a calculation by Sealpost, not an event): {text}"
    if event == "DeadlineApproaching":
        return (
            f"Reminder computed by Sealpost: {_term(details.get('rule'))} "
            f"({details.get('calendar_name')}, {details.get('data_version')}) ends on "
            f"{_day(details.get('ends_on'))}, end of day {details.get('time_zone')}."
        )
    if event == "DeadlinePassed":
        return (
            f"Computed by Sealpost: the last day of {_term(details.get('rule'))}, "
            f"{_day(details.get('ends_on'))} ({details.get('time_zone')}), is over. This "
            "records the passing of time only, not any act or omission of the recipient."
        )
    return None
