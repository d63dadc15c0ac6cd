"""The API's shapes for sequences (pydantic at the boundary only), and the parse of a
definition (JSON or YAML, the same schema) into :mod:`sealpost.sequences.model` values, every
template checked in the sandbox; a refusal names the field's path (``steps.2.template``)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from sealpost.deadlines.calendars import calendar_for, normalised_code
from sealpost.deadlines.rules import DeadlineRule, check_trigger
from sealpost.errors import InvalidInput
from sealpost.sequences.model import (
    ALWAYS,
    CHANNELS,
    EMAIL_CHANNELS,
    STOP_CAUSES,
    Definition,
    InvalidSequence,
    Step,
    Variant,
)
from sealpost.sequences.templates import LocalizedTemplate, StepTemplate, check_template
from sealpost.sequences.variants import validate_split
from sealpost.sequences.windows import Delay, SendWindow

_STRICT = ConfigDict(extra="forbid")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class LocalizedIn(BaseModel):
    model_config = _STRICT
    subject: str | None = Field(None, max_length=2000)
    text: str = Field(..., min_length=1, max_length=20000)
    html: str | None = Field(None, max_length=100000)


class TemplateIn(BaseModel):
    model_config = _STRICT
    fallback_language: str = Field(..., min_length=2, max_length=16)
    languages: dict[str, LocalizedIn] = Field(..., min_length=1)


class DelayIn(BaseModel):
    model_config = _STRICT
    amount: int = Field(0, ge=0, le=3650)
    unit: Literal["hours", "natural_days", "business_days"] = "hours"
    calendar: str | None = Field(None, max_length=16)


class QuietHoursIn(BaseModel):
    model_config = _STRICT
    start: time
    end: time


class WindowIn(BaseModel):
    model_config = _STRICT
    quiet_hours: QuietHoursIn | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], min_length=1
    )


class StepIn(BaseModel):
    model_config = _STRICT
    channel: Literal["sms", "email", "certified_email", "certified_email_pickup", "certified_sms"]
    template: TemplateIn
    delay: DelayIn = Field(default_factory=DelayIn)
    window: WindowIn = Field(default_factory=WindowIn)
    on_failure: Literal["next", "stop"] = "next"
    deadline: dict[str, Any] | None = Field(
        None,
        description="A legal term on the step's message (email steps): "
        '{"amount", "unit": "business_days"|"natural_days", "starts_from": '
        '"delivery"|"handover"|"acceptance", "calendar": "ES-CT", "variant"} (docs/deadlines.md).',
    )


class VariantIn(BaseModel):
    model_config = _STRICT
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    percentage: int = Field(..., ge=0, le=100)
    steps: list[StepIn] = Field(..., min_length=1, max_length=20)


_SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"
"""No control character (a NUL no column holds, a line break that would end a header)."""


class SenderIn(BaseModel):
    model_config = _STRICT
    email: str = Field(
        ..., min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"
    )
    name: str | None = Field(None, max_length=200, pattern=_SINGLE_LINE)


class SequenceIn(BaseModel):
    """A sequence definition (``POST /v1/sequences``, JSON or YAML)."""

    model_config = _STRICT
    name: str = Field(..., min_length=1, max_length=200, pattern=_SINGLE_LINE)
    sender: SenderIn | None = None
    payment_link_base: str | None = Field(
        None, max_length=500, pattern=r"^https://", description="The payment link is this + token."
    )
    steps: list[StepIn] | None = Field(None, min_length=1, max_length=20)
    variants: list[VariantIn] | None = Field(None, min_length=1, max_length=10)
    stop_on: list[Literal[STOP_CAUSES]] | None = None  # type: ignore[valid-type]


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def parse_definition(data: Any) -> Definition:
    """The definition ``data`` describes, or :class:`InvalidSequence` naming the field."""
    try:
        body = SequenceIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidSequence(_path(tuple(first["loc"])), first["msg"]) from None
    if (body.steps is None) == (body.variants is None):
        raise InvalidSequence("steps", "give either steps or variants (each with its steps)")
    if body.variants is not None:
        shaped = [
            (f"variants.{i}", v.name, v.percentage, v.steps) for i, v in enumerate(body.variants)
        ]
        names = [v.name for v in body.variants]
        if len(set(names)) != len(names):
            raise InvalidSequence("variants", "variant names must differ")
        try:
            validate_split([(v.name, v.percentage) for v in body.variants])
        except InvalidInput as exc:
            raise InvalidSequence("variants", exc.message) from None
    else:
        assert body.steps is not None
        shaped = [("", "main", 100, body.steps)]
    variants = []
    uses_email = False
    for prefix, name, percentage, steps_in in shaped:
        steps = []
        for i, s in enumerate(steps_in):
            field = f"{prefix}.steps.{i}" if prefix else f"steps.{i}"
            steps.append(_step(field, i + 1, s))
            uses_email |= s.channel in EMAIL_CHANNELS
        variants.append(Variant(name, percentage, tuple(steps)))
    if uses_email and body.sender is None:
        raise InvalidSequence("sender", "an email step needs sender.email")
    stop_on = frozenset(body.stop_on or STOP_CAUSES) | ALWAYS
    return Definition(
        name=body.name,
        variants=tuple(variants),
        stop_on=stop_on,
        sender_email=body.sender.email if body.sender else None,
        sender_name=body.sender.name if body.sender else None,
        payment_link_base=body.payment_link_base,
        raw=body.model_dump(mode="json", exclude_none=True),
    )


def _step(field: str, number: int, s: StepIn) -> Step:
    if s.template.fallback_language not in s.template.languages:
        raise InvalidSequence(
            f"{field}.template.fallback_language", "must be one of the template's languages"
        )
    template = StepTemplate(
        {
            lang: LocalizedTemplate(loc.subject, loc.text, loc.html)
            for lang, loc in s.template.languages.items()
        },
        s.template.fallback_language,
    )
    if s.channel in EMAIL_CHANNELS:
        for lang, loc in s.template.languages.items():
            if not loc.subject:
                raise InvalidSequence(
                    f"{field}.template.languages.{lang}.subject", "an email step needs a subject"
                )
    check_template(template, f"{field}.template")
    if s.delay.unit == "business_days":
        if s.delay.calendar is None:
            raise InvalidSequence(f"{field}.delay.calendar", "business days need a calendar")
        try:
            calendar_for(s.delay.calendar)
        except InvalidInput as exc:
            raise InvalidSequence(f"{field}.delay.calendar", exc.message) from None
    quiet = s.window.quiet_hours
    window = SendWindow(
        quiet.start if quiet else None,
        quiet.end if quiet else None,
        frozenset(WEEKDAYS.index(d) for d in s.window.weekdays),
    )
    assert s.channel in CHANNELS
    return Step(
        number,
        s.channel,
        template,
        Delay(s.delay.amount, s.delay.unit, s.delay.calendar),
        window,
        s.on_failure,
        _deadline(field, s),
    )


def _deadline(field: str, s: StepIn) -> dict[str, Any] | None:
    """The step's deadline rule, checked as ``POST /v1/communications`` checks one: a known
    calendar, and a trigger the step's delivery records (a direct email is delivered, a pickup
    is accepted or handed over); SMS steps carry none (the terms follow communications)."""
    if s.deadline is None:
        return None
    if s.channel not in EMAIL_CHANNELS:
        raise InvalidSequence(f"{field}.deadline", "a deadline rule needs an email step")
    try:
        rule = DeadlineRule.from_json(s.deadline)
        rule = replace(rule, calendar=normalised_code(rule.calendar))
        check_trigger(rule, pickup=s.channel == "certified_email_pickup")
    except InvalidInput as exc:
        raise InvalidSequence(f"{field}.deadline", exc.message) from None
    return rule.to_json()


class PersonIn(BaseModel):
    model_config = _STRICT
    name: str = Field(..., min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(None, max_length=32)


VariableName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
VariableText = Annotated[str, StringConstraints(max_length=10_000)]
"""A reminder's name, amount, reference, link: no variable is a document (a row of megabytes
would be stored with the enrolment and rendered into every step)."""
ExternalKind = Annotated[str, StringConstraints(min_length=1, max_length=32)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""As long as their columns: never cut (two kinds cut to one would collide, a cut id would
never match the resource it names)."""


class EnrolmentIn(BaseModel):
    """One person enrolled (``POST /v1/sequences/{id}/enrolments``, one bulk row)."""

    model_config = _STRICT
    person: PersonIn
    language: str | None = Field(None, min_length=2, max_length=16)
    time_zone: str = Field("UTC", min_length=1, max_length=64)
    variables: dict[VariableName, VariableText | int | float | bool | None] = Field(
        default_factory=dict,
        max_length=100,
        description="Up to 100, names up to 64 characters, texts up to 10,000.",
    )
    external_ids: dict[ExternalKind, ExternalId] = Field(
        default_factory=dict,
        max_length=20,
        description="Ids of other resources whose outcome stops the enrolment, e.g. "
        '{"signature_process": "<id>"}; kinds up to 32 characters, ids up to 200.',
    )

    @model_validator(mode="after")
    def _storable(self) -> EnrolmentIn:
        """Nothing a column, a message or a JSON answer cannot hold: a NUL character
        (PostgreSQL text refuses it, an SMPP short message ends at it) or a NaN or infinite
        number (JSON lines accept them, no JSON answer can carry them)."""
        person = self.person
        texts = {
            "person.name": person.name,
            "person.email": person.email,
            "person.phone": person.phone,
            "language": self.language,
            "time_zone": self.time_zone,
        }
        for key, value in self.variables.items():
            texts[f"variables.{key}"] = key
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"variables.{key}: {value} is not a number a message can show")
            if isinstance(value, str):
                texts[f"variables.{key}"] = key + value
        for kind, value in self.external_ids.items():
            texts[f"external_ids.{kind}"] = kind + value
        for where, text in texts.items():
            if text is not None and "\x00" in text:
                raise ValueError(f"{where.replace(chr(0), '')}: a NUL character is not allowed")
        return self


class PreviewIn(BaseModel):
    model_config = _STRICT
    step: int = Field(1, ge=1)
    variant: str | None = None
    language: str = Field(..., min_length=2, max_length=16)
    variables: dict[str, Any] = Field(default_factory=dict)


class SettingsIn(BaseModel):
    """A tenant's sequence settings (``PUT /v1/settings/sequences``)."""

    model_config = _STRICT
    payment_link_base: str | None = Field(
        None,
        max_length=500,
        pattern=r"^https://",
        description="{{ payment_link }} is this + the enrolment's token, unless the sequence "
        "names its own payment_link_base.",
    )
