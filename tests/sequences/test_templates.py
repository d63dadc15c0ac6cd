"""Step templates: what a tenant can write, what a sandboxed render does with it, and what is
refused (Python internals, resource exhaustion) with a clear 422."""

from __future__ import annotations

import time

import markupsafe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.errors import InvalidInput
from sealpost.sequences.templates import (
    MAX_TEMPLATE_BYTES,
    LocalizedTemplate,
    MissingVariables,
    StepTemplate,
    TemplateRefused,
    check_template,
    format_amount,
    format_date,
    preview,
    render,
)

REMINDER = StepTemplate(
    languages={
        "es": LocalizedTemplate(
            subject="Recordatorio: {{ reference }}",
            text="Hola {{ name }}, debe {{ amount|format_amount(currency, 'es') }} "
            "desde el {{ due_date|format_date('es') }}. Pague en {{ payment_link }}",
            html='<p>Hola {{ name }}, pague en <a href="{{ payment_link }}">este enlace</a></p>',
        ),
        "en": LocalizedTemplate(
            subject="Reminder: {{ reference }}",
            text="Hello {{ name }}, {{ amount|format_amount(currency, 'en') }} is due since "
            "{{ due_date|format_date('en') }}.{% if note is defined %} {{ note }}{% endif %}",
            html=None,
        ),
    },
    fallback_language="en",
)

VARIABLES = {
    "name": "Ana <García>",
    "amount": "1234.5",
    "currency": "EUR",
    "due_date": "2026-11-30",
    "reference": "F-2026-0042",
    "payment_link": "https://pay.example/t/abc?x=1&y=2",
}


def one(text: str, html: str | None = None) -> StepTemplate:
    return StepTemplate({"en": LocalizedTemplate(None, text, html)}, fallback_language="en")


def test_a_reminder_renders_in_the_enrolments_language_with_html_escaped() -> None:
    check_template(REMINDER, "steps[0].template")
    out = render(REMINDER, "es", VARIABLES)
    assert out.language == "es"
    assert out.subject == "Recordatorio: F-2026-0042"
    assert out.text == (
        "Hola Ana <García>, debe 1.234,50\u00a0EUR desde el 30 de noviembre de 2026. "
        "Pague en https://pay.example/t/abc?x=1&y=2"
    )
    assert out.html is not None
    assert "Ana &lt;García&gt;" in out.html and "x=1&amp;y=2" in out.html


@pytest.mark.parametrize(
    ("asked", "chosen"),
    [("es", "es"), ("es-MX", "es"), ("ES_mx", "es"), ("en-GB", "en"), ("fr", "en"), ("ca", "en")],
)
def test_the_language_falls_back_to_the_primary_subtag_then_the_fallback(
    asked: str, chosen: str
) -> None:
    assert render(REMINDER, asked, VARIABLES).language == chosen


def test_an_exact_regional_template_wins_over_the_primary_language() -> None:
    t = StepTemplate(
        {
            "es": LocalizedTemplate(None, "España {{ amount|format_amount('EUR', 'es') }}", None),
            "es-MX": LocalizedTemplate(
                None, "México {{ amount|format_amount('MXN', 'es-MX') }}", None
            ),
        },
        fallback_language="es",
    )
    assert render(t, "es-mx", {"amount": 1500}).text == "México MXN\u00a01,500.00"
    assert render(t, "es-AR", {"amount": 1500}).text == "España 1.500,00\u00a0EUR"


def test_every_missing_variable_is_listed_at_once() -> None:
    with pytest.raises(MissingVariables) as caught:
        render(REMINDER, "es", {"name": "Ana"})
    assert caught.value.missing == ["amount", "currency", "due_date", "payment_link", "reference"]
    assert caught.value.status == 422 and caught.value.code == "missing_variables"
    assert caught.value.extensions()["missing"] == caught.value.missing


def test_optional_variables_behind_default_or_defined_are_not_missing() -> None:
    t = one("{{ name }}{{ note|default('') }}{% if extra is defined %}{{ extra }}{% endif %}")
    assert render(t, "en", {"name": "Ana"}).text == "Ana"
    assert render(REMINDER, "en", {**VARIABLES, "note": "Thanks."}).text.endswith(" Thanks.")
    with pytest.raises(MissingVariables) as caught:
        render(t, "en", {})
    assert caught.value.missing == ["name"]


def test_a_missing_nested_value_is_named() -> None:
    t = one("{{ person.first }} {{ person.middle }}")
    with pytest.raises(MissingVariables) as caught:
        render(t, "en", {"person": {"first": "Ana"}})
    assert caught.value.missing == ["middle"]


def test_preview_renders_a_sample_and_reports_what_is_missing() -> None:
    rendered, missing = preview(REMINDER, "es", VARIABLES)
    assert rendered is not None and missing == []
    rendered, missing = preview(REMINDER, "es", {"name": "Ana", "amount": 10, "currency": "EUR"})
    assert rendered is None
    assert missing == ["due_date", "payment_link", "reference"]


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
        "{{ ''['__class__'] }}",
        "{{ ''|attr('__class__') }}",
        "{{ '{0.__class__}'.format(name) }}",
        "{{ name.format }}",
        "{{ self.__init__ }}",
        "{{ _private }}",
        "{{ f.func_globals }}",
        "{{ g.gi_frame }}",
        "{% include 'other.html' %}",
        "{% extends 'base.html' %}",
        "{% import 'macros.html' as m %}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused_at_definition(source: str) -> None:
    t = StepTemplate(
        {"es": LocalizedTemplate(None, "ok", None), "en": LocalizedTemplate("s", "ok", source)},
        fallback_language="es",
    )
    with pytest.raises(TemplateRefused) as caught:
        check_template(t, "steps[2].template")
    assert isinstance(caught.value, InvalidInput) and caught.value.status == 422
    assert caught.value.field == "steps[2].template.en.html"
    assert caught.value.extensions() == {"field": caught.value.field, "why": caught.value.why}
    with pytest.raises(TemplateRefused):
        render(t, "en", {"name": "x"})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''['_' ~ '_cla' ~ 'ss_' ~ '_'] }}",
        "{% set n = '_' ~ '_class_' ~ '_' %}{{ ''[n] }}",
        "{{ name[name] }}",
    ],
)
def test_what_the_sandbox_stops_at_render_is_refused_as_well(source: str) -> None:
    t = one(source)
    check_template(t, "template")
    with pytest.raises(TemplateRefused) as caught:
        render(t, "en", {"name": "__class__"})
    assert caught.value.field == "template.en.text"
    assert caught.value.why.startswith("not allowed")


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ (name|e).center(1000000000) }}", "over 10000"),
        ("{{ (name|e).replace('', big) }}", "value of over"),
        ("{{ (name|e).expandtabs(100) }}", "expandtabs"),
    ],
)
def test_html_markup_methods_have_the_same_limits(source: str, why: str) -> None:
    t = one("ok", html=source)
    check_template(t, "template")
    with pytest.raises(TemplateRefused) as caught:
        render(t, "en", {"name": "a" * 1000, "big": "b" * 1000})
    assert caught.value.field == "template.en.html" and why in caught.value.why


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ 'x' * 1000000000 }}", "value of over"),
        ("{{ 'x'|center(1000000000) }}", "over 10000"),
        ("{{ 'x'.ljust(1000000000) }}", "over 10000"),
        ("{{ 2 ** 1000000 }}", "bits"),
        ("{{ 10 ** 1000 ** 2 }}", "bits"),
        ("{{ 1.0001 ** 1000000 }}", "power over"),
        ("{{ '%999999999d' % 1 }}", "width"),
        ("{{ '%999999999d'|format(1) }}", "width"),
        ("{{ 'x\tx'.expandtabs(100) }}", "expandtabs"),
        ("{{ (['x' * 1000] * 1000)|join }}", "value of over"),
        ("{{ 'abc'|replace('', 'y' * 200000) }}", "value of over"),
        (
            "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
            "operations",
        ),
        ("{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}", "operations"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recurses"),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}",
            "operations",
        ),
        ("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", "output is over"),
        (
            "{% macro m() %}{% for i in range(100) %}{% for j in range(400) %}{{ big }}"
            "{% endfor %}{% endfor %}{% endmacro %}"
            "{{ m()|length }}",
            "text of over",
        ),
        (
            "{% set x %}{% for i in range(100) %}{% for j in range(400) %}{{ big }}"
            "{% endfor %}{% endfor %}{% endset %}{{ x|length }}",
            "text of over",
        ),
        ("{% for i in range(5000) %}{{ items|list|length }}{% endfor %}", "operations"),
        ("{% for i in range(9000) %}{{ items|string|length }}{% endfor %}", "operations"),
        ("{{ big|indent(5000) }}", "value of over"),
        (
            "{% set a = 'xxxxxxxxxxxxxxxx' %}"
            + "".join(f"{{% set a{i + 1} = a{i} ~ a{i} %}}".replace("a0", "a") for i in range(30))
            + "{{ a30 }}",
            "value of over",
        ),
    ],
)
def test_a_template_that_would_exhaust_the_worker_is_stopped_quickly(source: str, why: str) -> None:
    t = one(source)
    check_template(t, "template")
    started = time.monotonic()
    with pytest.raises(TemplateRefused) as caught:
        render(t, "en", {"items": list(range(2000)), "big": "line\n" * 2000})
    assert time.monotonic() - started < 2
    assert why in caught.value.why


def test_long_text_filters_work_within_the_limits() -> None:
    text = "palabra " * 2000
    out = render(one("{{ text|wordwrap(60) }}|{{ text|indent(2) }}"), "en", {"text": text})
    wrapped, indented = out.text.split("|")
    assert max(len(line) for line in wrapped.splitlines()) <= 60
    assert len(indented) == len(text)


def test_rendering_is_fast_enough_for_a_scheduler() -> None:
    render(REMINDER, "es", VARIABLES)  # compiled once, then cached
    started = time.perf_counter()
    for _ in range(200):
        render(REMINDER, "es", VARIABLES)
    assert (time.perf_counter() - started) / 200 < 0.005


def test_a_syntax_error_names_the_part_and_the_line() -> None:
    t = StepTemplate({"en": LocalizedTemplate("Hi {{ name", "ok", None)}, "en")
    with pytest.raises(TemplateRefused) as caught:
        check_template(t, "steps[0].template")
    assert caught.value.field == "steps[0].template.en.subject"
    assert caught.value.why.startswith("syntax error on line 1")


@pytest.mark.parametrize(
    "source", ["{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}", "{{ 1" + " + 1" * 5000 + " }}"]
)
def test_a_template_nested_too_deeply_to_read_is_refused(source: str) -> None:
    with pytest.raises(TemplateRefused, match="nests too deeply"):
        check_template(one(source), "t")


def test_an_oversized_template_and_a_missing_fallback_are_refused() -> None:
    with pytest.raises(TemplateRefused, match="KiB"):
        check_template(one("x" * (MAX_TEMPLATE_BYTES + 1)), "t")
    with pytest.raises(TemplateRefused) as caught:
        check_template(StepTemplate({"es": LocalizedTemplate(None, "x", None)}, "en"), "t")
    assert caught.value.field == "t.fallback_language"


def test_ordinary_template_features_still_work() -> None:
    t = one(
        "{% for line in lines %}{{ loop.index }}. {{ line.what|upper }} "
        "{{ line.amount|format_amount('EUR') }}\n{% endfor %}"
        "{{ lines|map(attribute='amount')|sum }} {{ name|title }} {{ name.upper() }} "
        "{{ '%05.1f'|format(3.14159) }} {{ (lines|length) * 2 }} {{ name ~ '!' }}"
        "{% for x in lines %} {{ loop.index }}/{{ loop.length }}{% if loop.last %}.{% endif %}"
        "{% endfor %}"
    )
    out = render(
        t,
        "en",
        {"lines": [{"what": "rent", "amount": 100}, {"what": "fee", "amount": 5}], "name": "ana"},
    )
    assert out.text == (
        "1. RENT EUR\u00a0100.00\n2. FEE EUR\u00a05.00\n105 Ana ANA 003.1 4 ana! 1/2 2/2."
    )


def test_a_mistake_at_render_is_a_refusal_naming_the_part() -> None:
    with pytest.raises(TemplateRefused, match="cannot be rendered"):
        render(one("{{ amount|format_amount('EURO') }}"), "en", {"amount": 1})
    with pytest.raises(TemplateRefused, match="cannot be rendered"):
        render(one("{{ 1 / zero }}"), "en", {"zero": 0})


@pytest.mark.parametrize(
    ("amount", "currency", "language", "text"),
    [
        (1234.5, "EUR", "es", "1.234,50\u00a0EUR"),
        ("1234.5", "EUR", "en", "EUR\u00a01,234.50"),
        (1234567, "JPY", "en", "JPY\u00a01,234,567"),
        ("12.3456", "KWD", "en", "KWD\u00a012.346"),
        ("0.125", "EUR", "fr", "0,12\u00a0EUR"),
        (-99.999, "usd", "en", "-USD\u00a0100.00"),
        (1000, "MXN", "es-MX", "MXN\u00a01,000.00"),
        (1000000, "RON", "ro", "1.000.000,00\u00a0RON"),
    ],
)
def test_format_amount_uses_the_currencys_decimals_and_the_languages_signs(
    amount: object, currency: str, language: str, text: str
) -> None:
    assert format_amount(amount, currency, language) == text


def test_format_date_in_a_few_languages() -> None:
    assert format_date("2026-12-07", "es") == "7 de diciembre de 2026"
    assert format_date("2026-04-01T10:00:00Z", "ca") == "1 d'abril de 2026"
    assert format_date("2026-12-07", "en-GB") == "7 December 2026"
    assert format_date("2026-12-07", "ja") == "2026-12-07"
    with pytest.raises(TypeError):
        format_date("soon", "en")


# --- properties ------------------------------------------------------------------------------

TOKENS = [
    "{{ ",
    " }}",
    "{% ",
    " %}",
    "if ",
    "for ",
    "x ",
    "in ",
    "endif",
    "endfor",
    "name",
    "items",
    "|",
    "upper",
    "join",
    "replace",
    "(",
    ")",
    "'",
    "~",
    "*",
    "+",
    "**",
    "9",
    "99999",
    ".",
    "_",
    "__class__",
    "[",
    "]",
    ",",
    "range",
    "loop",
    "set ",
    "= ",
    "macro ",
    "endmacro",
    "format",
    "%",
    "d",
    "<b>",
    "&",
    " ",
    "\n",
    "é",
    "default",
    "is defined",
]


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.sampled_from(TOKENS), max_size=30))
def test_any_text_is_either_refused_or_rendered_never_a_crash(parts: list[str]) -> None:
    source = "".join(parts)
    t = one(source, html=source)
    refused: TemplateRefused | None = None
    try:
        check_template(t, "t")
    except TemplateRefused as exc:
        refused = exc
    if refused is not None:
        assert refused.field.startswith("t.en.")
        return
    try:
        out = render(t, "en", {"name": "Ana <b>", "items": ["a", "b"], "x": 1})
    except (TemplateRefused, MissingVariables):
        return
    assert isinstance(out.text, str) and isinstance(out.html, str)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=200))
def test_a_variable_is_escaped_in_html_and_verbatim_in_text(value: str) -> None:
    out = render(one("[{{ v }}]", html='<p title="{{ v }}">{{ v }}</p>'), "en", {"v": value})
    assert out.text == f"[{value}]"
    escaped = str(markupsafe.escape(value))
    assert out.html == f'<p title="{escaped}">{escaped}</p>'
    assert "<" not in escaped and '"' not in escaped
