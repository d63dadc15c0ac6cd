"""Request and response shapes of the deadlines API (pydantic, at the boundary only)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, Field

from sealpost.api.text import Choice, SingleLine
from sealpost.deadlines.rules import STARTS_FROM, UNITS, VARIANTS, DeadlineRule

CALENDAR_PATTERN = r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,6})?$"
"""ISO 3166-1 alpha-2, or ISO 3166-2 (country, hyphen, up to six letters or digits)."""


class DeadlineRuleBody(BaseModel):
    """ "N business / natural days from the delivery / handover / acceptance, on calendar X"."""

    amount: int = Field(ge=1, le=3650, description="How many days.")
    unit: Annotated[str, Choice(UNITS)] = Field(description="business_days or natural_days.")
    starts_from: Annotated[str, Choice(STARTS_FROM)] = Field(
        description="delivery (direct email: the recipient's mail server accepted it), "
        "handover or acceptance (registered pickup)."
    )
    calendar: str = Field(
        min_length=2,
        max_length=16,
        pattern=CALENDAR_PATTERN,
        description="ISO 3166-1 or 3166-2 code: ES, ES-CT, IT-MI.",
    )
    variant: Annotated[str, Choice(VARIANTS)] = Field(
        "es_art30",
        description="es_art30 (default), strict_natural, it_art155_cpc, fr_cpc_642: "
        "docs/deadlines.md.",
    )

    def rule(self) -> DeadlineRule:
        return DeadlineRule.from_json(self.model_dump())


class CalendarDayBody(BaseModel):
    date: date
    name: SingleLine = Field(min_length=1, max_length=200)
    kind: Annotated[str, Choice(("holiday", "closure"))] = Field(
        "holiday", description="holiday (a local public holiday) or closure (office closed)."
    )


class CalendarDaysBody(BaseModel):
    days: list[CalendarDayBody] = Field(max_length=400)


class CalendarDaysOut(BaseModel):
    calendar: str
    days: list[CalendarDayBody]


class NonBusinessDay(BaseModel):
    date: date
    name: str
    kind: str = Field(description="weekend, holiday (public), local_holiday or closure.")


class CalendarOut(BaseModel):
    calendar: str
    name: str = Field(description="What a certificate prints: ES-CT or ES-CT + 2 local days.")
    year: int
    time_zone: str
    data_version: str
    non_business_days: list[NonBusinessDay]


class ComputedOut(BaseModel):
    rule: dict[str, Any]
    trigger_at: str
    trigger_on: str
    ends_on: str
    ends_at: str
    time_zone: str
    calendar_name: str
    data_version: str
    skipped: list[dict[str, str]]
    text: str
