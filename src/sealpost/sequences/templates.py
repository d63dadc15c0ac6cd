"""Step templates: Jinja2 in a sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sealpost.errors import InvalidInput


@dataclass(frozen=True)
class LocalizedTemplate:
    subject: str | None
    text: str
    html: str | None


@dataclass(frozen=True)
class StepTemplate:
    languages: Mapping[str, LocalizedTemplate]
    fallback_language: str


@dataclass(frozen=True)
class Rendered:
    language: str
    subject: str | None
    text: str
    html: str | None


class TemplateRefused(InvalidInput):
    code = "template_refused"
    title = "The template is refused"
    problem_fields = ("field", "why")

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


class MissingVariables(InvalidInput):
    code = "missing_variables"
    title = "The template needs variables that were not given"
    problem_fields = ("field", "missing")

    def __init__(self, field: str, missing: list[str]) -> None:
        super().__init__(f"{field}: missing variables {', '.join(missing)}")
        self.field = field
        self.missing = missing


_TEXT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


def check_template(t: StepTemplate, field: str) -> None:
    for lang, loc in t.languages.items():
        for env, source in ((_TEXT, loc.subject), (_TEXT, loc.text), (_HTML, loc.html)):
            if source is not None:
                env.parse(source)


def render(
    t: StepTemplate, language: str, variables: Mapping[str, Any], *, field: str = "template"
) -> Rendered:
    lang = language if language in t.languages else t.fallback_language
    loc = t.languages[lang]
    return Rendered(
        lang,
        _TEXT.from_string(loc.subject).render(variables) if loc.subject else None,
        _TEXT.from_string(loc.text).render(variables),
        _HTML.from_string(loc.html).render(variables) if loc.html else None,
    )


def preview(
    t: StepTemplate, language: str, sample: Mapping[str, Any]
) -> tuple[Rendered | None, list[str]]:
    try:
        return render(t, language, sample), []
    except MissingVariables as exc:
        return None, exc.missing
