"""A sequence step's message templates: Jinja2 in a sandbox, per language, with a fallback.

A tenant writes the templates and the enrolments' variables fill them, so a template is
untrusted code that runs on the service.  Defences, each tested in
``tests/sequences/test_templates.py``:

- Jinja2's ``ImmutableSandboxedEnvironment``: no attribute starting with ``_`` (so no
  ``__class__``, ``__globals__``, ``__subclasses__``), no function internals, no method that
  mutates a list, dict or set.  What the sandbox stops at render is :class:`TemplateRefused`.
- At definition (:func:`check_template`), what is statically visible is refused before it ever
  runs: a syntax error, an attribute, item or name starting with ``_`` or naming function or
  generator internals, a string constant holding a dunder (``'{0.__class__}'.format``,
  ``attr('__class__')``), ``include``/``import``/``extends`` (a template stands alone), and
  a template over :data:`MAX_TEMPLATE_BYTES`.
- Resources: a template has no loader, no ``namespace``, ``cycler``, ``joiner`` or
  ``lipsum`` (state across iterations, unbounded generators), and the filters and ``str``
  methods are an allow-list (no ``random``, ``expandtabs``, ``translate``).  Each render has a
  budget of :data:`MAX_OPERATIONS` operations (calls, attribute look-ups, ``range`` items,
  loop iterations; a macro call counts :data:`MACRO_COST`), about 0.1 s of CPU; every value
  an operation produces (``~``, ``+``, ``*``, a filter, a method) weighs at most
  :data:`MAX_VALUE` characters or items, counted through nested lists, and is bounded before
  it is built where one step could multiply it (``*``, ``**``, ``replace``, ``join``,
  ``indent``, printf widths); each part's output is at most :data:`MAX_OUTPUT` characters.
  So ``{% set b = a ~ a %}`` chains, ``'x' * 10**9``, ``'x'|center(10**9)``, recursive
  macros or loops nested over ``range`` end in :class:`TemplateRefused` instead of
  exhausting the worker.

Subject and text are rendered without escaping; the HTML part with autoescape on (a variable
holding ``<script>`` comes out as ``&lt;script&gt;``).  Undefined variables are errors
(``StrictUndefined``): :class:`MissingVariables` lists every missing name at once.

Two filters help collection messages: ``amount|format_amount(currency, language)`` writes
an amount with the currency's minor units (ISO 4217: 2 for EUR, 0 for JPY, 3 for KWD) and the
language's decimal and grouping signs, and ``date|format_date(language)`` writes a date as
day, month name and year in the language (numeric ISO form for a language it does not know).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import operator
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Macro, Undefined
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
)
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

from sealpost.errors import InvalidInput

MAX_TEMPLATE_BYTES = 64 * 1024
"""The largest template part (subject, text or HTML), in UTF-8 bytes."""
MAX_OUTPUT = 256 * 1024
"""The longest rendered part, in characters."""
MAX_VALUE = 256 * 1024
"""The longest string or sequence any single operation of a template may produce."""
MAX_OPERATIONS = 100_000
"""Calls, attribute look-ups, ``range`` items and loop iterations per render."""
MACRO_COST = 20
"""Operations a macro call costs (a call of a template's own macro takes some 20 times as long
as a look-up: recursive macros reach the budget in a tenth of a second)."""
MAX_ARGUMENT = 10_000
"""The largest number a template may pass to a filter or method (``center(80)`` is fine,
``center(10**9)`` is refused): widths, counts and repeats beyond it only serve to blow up."""
MAX_INT_BITS = 4096
"""The largest integer arithmetic may produce (``10**10**9`` would take the CPU for hours)."""

_UNSAFE_NAMES = (
    UNSAFE_FUNCTION_ATTRIBUTES
    | UNSAFE_METHOD_ATTRIBUTES
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
    | {"mro", "format", "format_map", "func_globals", "func_code", "im_func", "im_self"}
    | {"f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next"}
)
"""Attribute names refused at definition besides those starting with ``_``: function,
method, generator and coroutine internals, and ``str.format`` (whose replacement fields reach
attributes; the ``format`` *filter* is the printf-style one and stays)."""


@dataclass(frozen=True)
class LocalizedTemplate:
    """One language's parts: the subject (email only), the plain text, the HTML (optional)."""

    subject: str | None
    text: str
    html: str | None


@dataclass(frozen=True)
class StepTemplate:
    """A step's templates by language tag (``es``, ``es-MX``, ``ca``...), and the language used
    when an enrolment's language (or its primary subtag) has none."""

    languages: Mapping[str, LocalizedTemplate]
    fallback_language: str


@dataclass(frozen=True)
class Rendered:
    """What was rendered, and in which of the template's languages."""

    language: str
    subject: str | None
    text: str
    html: str | None


class TemplateRefused(InvalidInput):
    """A template that cannot be taken or rendered: a syntax error, an attempt to reach Python
    internals, a resource limit; 422 with the ``field`` (``steps[1].template.es.html``) and
    ``why``, in words."""

    code = "template_refused"
    title = "The template is refused"
    problem_fields = ("field", "why")

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


class MissingVariables(InvalidInput):
    """A render that needs variables the enrolment does not have; 422 listing all of them."""

    code = "missing_variables"
    title = "The template needs variables that were not given"
    problem_fields = ("field", "missing")

    def __init__(self, field: str, missing: list[str]) -> None:
        super().__init__(f"{field}: no value for {', '.join(missing)}")
        self.field = field
        self.missing = missing


# --- formatting filters --------------------------------------------------------------------

_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
"""ISO 4217 minor units that are not 2 (the standard's list, as published by SIX)."""

_SEPARATORS = {
    # language: (decimal sign, grouping sign, symbol after the number)
    "en": (".", ",", False),
    "es": (",", ".", True),
    "ca": (",", ".", True),
    "gl": (",", ".", True),
    "eu": (",", ".", True),
    "it": (",", ".", True),
    "pt": (",", ".", True),
    "de": (",", ".", True),
    "nl": (",", ".", False),
    "ro": (",", ".", True),
    "fr": (",", "\u202f", True),
}
"""Decimal and grouping signs per language (CLDR's for the language's main region); Spanish in
Mexico writes ``1,234.50`` as English does (CLDR ``es-MX``)."""
_REGIONAL_SEPARATORS = {"es-mx": (".", ",", False), "es-us": (".", ",", False)}

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre "
    "diciembre",
    "ca": "de gener|de febrer|de març|d'abril|de maig|de juny|de juliol|d'agost|de setembre|"
    "d'octubre|de novembre|de desembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre "
    "dicembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro "
    "dezembro",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "ro": "ianuarie februarie martie aprilie mai iunie iulie august septembrie octombrie "
    "noiembrie decembrie",
}


def _primary(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def format_amount(amount: Any, currency: str, language: str = "en") -> str:
    """``1234.5, "EUR", "es"`` → ``1.234,50 €``-style text: the currency's minor units (ISO
    4217), rounded half to even, the language's signs, and the ISO code as the symbol (never a
    guess between ``$`` of one country and another)."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        raise TypeError(f"format_amount: {str(amount)[:40]!r} is not a number") from None
    if not value.is_finite():
        raise TypeError("format_amount: the amount is not a finite number")
    code = str(currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise TypeError(f"format_amount: {str(currency)[:10]!r} is not an ISO 4217 code")
    places = _MINOR_UNITS.get(code, 2)
    quantum = Decimal(1).scaleb(-places)
    rounded = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    tag = str(language).replace("_", "-").lower()
    decimal_sign, group_sign, after = _REGIONAL_SEPARATORS.get(
        tag, _SEPARATORS.get(_primary(tag), _SEPARATORS["en"])
    )
    sign = "-" if rounded < 0 else ""
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    groups = f"{int(whole):,}".replace(",", group_sign)
    number = groups + (decimal_sign + fraction if places else "")
    return f"{sign}{number}\u00a0{code}" if after else f"{sign}{code}\u00a0{number}"


def format_date(value: Any, language: str = "en") -> str:
    """A date (or ISO 8601 ``YYYY-MM-DD`` text, or a datetime: its date) as ``7 December 2026``
    / ``7 de diciembre de 2026``; ``2026-12-07`` for a language without month names here."""
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(str(value)[:10])
        except ValueError:
            raise TypeError(f"format_date: {str(value)[:40]!r} is not a date") from None
    lang = _primary(str(language))
    names = _MONTHS.get(lang)
    if names is None:
        return day.isoformat()
    month = (names.split("|") if "|" in names else names.split())[day.month - 1]
    if lang == "en":
        return f"{day.day} {month} {day.year}"
    if lang in ("es", "pt"):
        return f"{day.day} de {month} de {day.year}"
    if lang == "ca":
        return f"{day.day} {month} de {day.year}"
    return f"{day.day} {month} {day.year}"


# --- the sandbox ---------------------------------------------------------------------------


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_OPERATIONS

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise SecurityError(f"the template runs more than {MAX_OPERATIONS} operations")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _spend(n: int = 1) -> None:
    budget = _budget.get(None)
    if budget is not None:
        budget.spend(n)


def _too_big() -> SecurityError:
    return SecurityError(f"the template builds a value of over {MAX_VALUE} characters or items")


_SEQUENCES = (list, tuple, set, frozenset)
_SCALARS = frozenset({int, float, bool, type(None), Decimal, dt.date, dt.datetime})


def _weight(value: Any, limit: int = MAX_VALUE) -> int:
    """Characters and items in ``value``, counted through nested containers (a list holding
    the same long string 1,000 times weighs 1,000 strings: its text would), stopping as soon as
    the count passes ``limit``."""
    total = 0
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str | bytes):
            total += len(item)
            continue
        if isinstance(item, Mapping):
            total += len(item)
            members: Iterable[Any] = (*item.keys(), *item.values())
        elif isinstance(item, _SEQUENCES):
            total += len(item)
            members = item
        else:
            total += 1
            continue
        if total > limit:
            return total
        for member in members:
            kind = type(member)
            if kind is str:
                total += len(member)
            elif kind not in _SCALARS:
                todo.append(member)
        if total > limit:
            return total
    return total


def _sized(value: Any) -> Any:
    """``value`` itself, unless it weighs over :data:`MAX_VALUE` or is a huge integer.  Weighing
    costs one operation per 16 characters or items, so copying a long list or text in a
    loop spends the budget as fast as it spends the CPU."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"the template builds a number of over {MAX_INT_BITS} bits")
        return value
    if isinstance(value, str):
        weight = len(value)
        _spend(weight // 16)
    else:
        weight = _weight(value)
        _spend(weight // 16)
    if weight > MAX_VALUE:
        raise _too_big()
    return value


def _concat(parts: Iterable[str]) -> str:
    """What Jinja2 joins a macro's, a ``{% set %}`` block's or a call block's output with:
    bounded before joining (the parts may be 100,000 references to one long string)."""
    items = parts if isinstance(parts, list) else list(parts)
    total = 0
    for part in items:
        total += len(part)
        if total > max(MAX_VALUE, MAX_OUTPUT):
            raise SecurityError(f"the template builds a text of over {MAX_VALUE} characters")
    return "".join(items)


def _check_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int | float) and not isinstance(arg, bool) and abs(arg) > MAX_ARGUMENT:
            raise SecurityError(f"the template passes {arg!r}, over {MAX_ARGUMENT}, to a call")


def _iterate(iterable: Any) -> Iterator[Any]:
    """What a ``for`` loop of a template iterates: each item costs one operation."""
    for item in iterable:
        _spend()
        yield item


def _capped_range(*args: int) -> Iterator[int]:
    _check_arguments(args, {})
    return _iterate(range(*args))


def _bound(size: int) -> None:
    if size > MAX_VALUE:
        raise _too_big()


def _precheck_replace(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``s.replace(old, new)`` may multiply ``s``: bound the result before building it."""
    if len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
        s, old, new = args[0], args[1], args[2]
        times = len(s) + 1 if old == "" else len(s) // len(old)
        _bound(len(s) + times * max(0, len(new) - len(old)))


def _precheck_join(separator: Any, items: Any) -> list[Any]:
    listed = list(items)
    _bound(_weight(listed) + len(str(separator)) * max(0, len(listed) - 1))
    return listed


def _precheck_lines(name: str, value: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """``indent`` adds its width to every line, ``wordwrap`` its wrap string every ``width``
    characters: bound the result before building it."""
    text = str(value)
    lines = text.count("\n") + 1
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        extra = len(width) if isinstance(width, str) else int(width)
        _bound(len(text) + lines * max(0, extra))
    else:
        width = args[0] if args else kwargs.get("width", 79)
        wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring") or "\n"
        pieces = lines + len(text) // max(1, int(width)) + 1
        _bound(len(text) + pieces * len(str(wrap)))


_STR_METHODS = frozenset(
    [
        "capitalize",
        "casefold",
        "center",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "ljust",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rjust",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "zfill",
    ]
)
"""The ``str`` methods a template may call: none that formats (``format`` reaches attributes),
none that multiplies text by a mapping or a tab size (``translate``, ``expandtabs``)."""


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):  # str and Markup (whose methods are Python functions)
        _check_arguments(args, kwargs)
    elif isinstance(obj, types.BuiltinMethodType) and owner is not None:
        _check_arguments(args, kwargs)
        return args
    else:
        return args
    if isinstance(owner, str):
        name = obj.__name__
        if name not in _STR_METHODS:
            raise SecurityError(f"the string method {name!r} is not available")
        if name == "replace":
            _precheck_replace((owner, *args), kwargs)
        if name == "join" and args:
            return (_precheck_join(owner, args[0]), *args[1:])
    return args


def _printf(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(value)
    if args and kwargs:
        raise TypeError("format: positional or keyword arguments, not both")
    return str(value) % (kwargs or args)


def _limited_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter with the operation budget, its numeric arguments capped, the amplifying
    ones (``replace``, ``join``, ``indent``, ``wordwrap``) bounded before they run, and its
    result's size checked."""
    skip = 2 if _PassArg.from_obj(func) is not None else 1

    @functools.wraps(func)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _spend()
        if name not in ("default", "d") and _any_missing((*args, *kwargs.values())):
            return _StrictUndefined(obj=_SILENT, name=name)
        _check_arguments(args[skip:], kwargs)
        value = args[skip - 1] if len(args) >= skip else None
        if name == "replace":
            _precheck_replace(args[skip - 1 :], kwargs)
        elif name == "join":
            separator = args[skip] if len(args) > skip else kwargs.get("d", "")
            listed = _precheck_join(separator, value)
            args = (*args[: skip - 1], listed, *args[skip:])
        elif name in ("indent", "wordwrap"):
            _precheck_lines(name, value, args[skip:], kwargs)
        return _sized(func(*args, **kwargs))

    return limited


_PRINTF_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


def _check_printf(spec: Any) -> None:
    if isinstance(spec, str):
        for width, precision in _PRINTF_WIDTH.findall(spec):
            for n in (width, precision):
                if n == "*" or (n and int(n) > MAX_ARGUMENT):
                    raise SecurityError(f"the template asks for a width over {MAX_ARGUMENT}")


def _power(a: Any, b: Any) -> Any:
    big = isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0
    if big and a.bit_length() * b > MAX_INT_BITS:
        raise SecurityError(f"the template builds a number of over {MAX_INT_BITS} bits")
    if isinstance(b, float | int) and abs(b) > MAX_ARGUMENT:
        raise SecurityError(f"the template raises to a power over {MAX_ARGUMENT}")
    return operator.pow(a, b)


def _multiply(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int):
            _bound(_weight(seq) * n)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"the template builds a number of over {MAX_INT_BITS} bits")
    return operator.mul(a, b)


def _modulo(a: Any, b: Any) -> Any:
    _check_printf(a)
    return operator.mod(a, b)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str | list | tuple) and isinstance(b, str | list | tuple):
        _bound(_weight(a) + _weight(b))
    return operator.add(a, b)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "**": _power,
    "*": _multiply,
    "%": _modulo,
    "+": _add,
}


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with an operation budget and size limits (module docstring)."""

    intercepted_binops = frozenset(_BINOPS)
    concat = staticmethod(_concat)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if _any_missing((left, right)):
            return _StrictUndefined(obj=_SILENT, name=operator)
        if operator in _BINOPS:
            return _sized(_BINOPS[operator](left, right))
        return super().call_binop(context, operator, left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in _UNSAFE_NAMES:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(MACRO_COST if isinstance(__obj, Macro) else 1)
        if _any_missing((*args, *kwargs.values())):
            return _StrictUndefined(obj=_SILENT, name="call")
        args = _check_call(__obj, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))


_FILTERS = frozenset(
    [
        "abs",
        "batch",
        "capitalize",
        "center",
        "count",
        "d",
        "default",
        "dictsort",
        "e",
        "escape",
        "filesizeformat",
        "first",
        "float",
        "forceescape",
        "groupby",
        "indent",
        "int",
        "items",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "replace",
        "reverse",
        "round",
        "safe",
        "select",
        "selectattr",
        "slice",
        "sort",
        "string",
        "striptags",
        "sum",
        "title",
        "tojson",
        "trim",
        "truncate",
        "unique",
        "upper",
        "urlencode",
        "urlize",
        "wordcount",
        "wordwrap",
        "xmlattr",
    ]
)
"""Jinja2's filters a template may use: not ``attr`` (``value.name`` says it), not ``random``
(a message must be reproducible), not ``pprint``; ``format`` is replaced by a checked one."""


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(undefined=_StrictUndefined, autoescape=autoescape, loader=None)
    env.globals.clear()
    env.globals.update(
        {"range": _capped_range, "__sealpost_iter": _iterate, "__sealpost_sized": _sized}
    )
    builtin = {name: env.filters[name] for name in _FILTERS}
    builtin.update(format=_printf, format_amount=format_amount, format_date=format_date)
    env.filters.clear()
    env.filters.update({name: _limited_filter(name, func) for name, func in builtin.items()})
    return env


class _StrictUndefined(Undefined):
    """Jinja2's ``StrictUndefined`` (any use of a missing value is an error, ``default`` and
    ``is defined`` still work); while :func:`_missing_names` collects, the name is recorded and
    the render goes on, so that one pass finds every missing variable."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        found = _missing.get(None)
        if found is None:
            return super()._fail_with_undefined_error(*args, **kwargs)
        name = str(self._undefined_name)
        if not isinstance(self._undefined_obj, Undefined):
            found.add(name)
        return _StrictUndefined(obj=_SILENT, name=name)

    def __str__(self) -> str:
        self._fail_with_undefined_error()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._fail_with_undefined_error()
        return iter(())

    def __bool__(self) -> bool:
        self._fail_with_undefined_error()
        return False

    def __len__(self) -> int:
        self._fail_with_undefined_error()
        return 0

    def __int__(self) -> int:  # type: ignore[override]
        self._fail_with_undefined_error()
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        self._fail_with_undefined_error()
        return 0.0

    def __eq__(self, other: object) -> bool:
        self._fail_with_undefined_error()
        return False

    def __ne__(self, other: object) -> bool:
        self._fail_with_undefined_error()
        return True

    def __hash__(self) -> int:
        return id(type(self))

    def __contains__(self, item: object) -> bool:
        self._fail_with_undefined_error()
        return False

    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = __call__ = __getitem__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error
    __pow__ = __rpow__ = _fail_with_undefined_error


_missing: contextvars.ContextVar[set[str]] = contextvars.ContextVar("template_missing")
_SILENT = Undefined()
"""The parent of an undefined value that comes from another one (already recorded)."""


def _any_missing(values: Sequence[Any]) -> bool:
    """While collecting missing names: record every undefined value among ``values`` and say
    whether there was one (the operation then yields an undefined value and the render goes
    on, instead of failing on ``Decimal('')`` and hiding the next missing name)."""
    if _missing.get(None) is None:
        return False
    undefined = [v for v in values if isinstance(v, Undefined)]
    for value in undefined:
        str(value)
    return bool(undefined)


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


# --- static checks -------------------------------------------------------------------------


def _unsafe_name(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in _UNSAFE_NAMES)


def _static_problem(ast: nodes.Template) -> str | None:
    """Why the parsed template is refused before it runs, or None."""
    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
            return "a template stands alone: extends, include and import are not available"
        if isinstance(node, nodes.Getattr) and _unsafe_name(node.attr):
            return f"the attribute {node.attr!r} is not available (Python internals)"
        if isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and _unsafe_name(arg.value):
                return f"the item {arg.value!r} is not available (Python internals)"
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            return f"the name {node.name!r} is not available (names starting with _ are reserved)"
        if isinstance(node, nodes.Const) and isinstance(node.value, str) and "__" in node.value:
            return "a string with a double underscore is not available (Python internals)"
        if isinstance(node, nodes.Filter | nodes.Test) and node.name.startswith("_"):
            return f"the filter {node.name!r} is not available"
        if isinstance(node, nodes.Filter) and node.name == "attr":
            return "the attr filter is not available: write value.name"
    return None


class _RuntimeChecks(NodeTransformer):
    """Every loop iterates through the budget, every ``~`` result goes through the size
    check: Jinja2 compiles both to plain Python that no sandbox hook sees."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.Name("__sealpost_iter", "load"), [node.iter], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.Name("__sealpost_sized", "load"), [node], [], None, None, lineno=node.lineno
        )


@dataclass(frozen=True)
class _Part:
    name: str
    source: str
    env: _Sandbox


def _parts(loc: LocalizedTemplate) -> list[_Part]:
    out = []
    if loc.subject is not None:
        out.append(_Part("subject", loc.subject, _TEXT))
    out.append(_Part("text", loc.text, _TEXT))
    if loc.html is not None:
        out.append(_Part("html", loc.html, _HTML))
    return out


def _parse(part: _Part, field: str) -> None:
    """:class:`TemplateRefused` for a part that must not run (cached by source)."""
    problem = _refusal(part.source, part.env.autoescape is True)
    if problem is not None:
        raise TemplateRefused(field, problem)


@functools.lru_cache(maxsize=1024)
def _refusal(source: str, autoescape: bool) -> str | None:
    if len(source.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        return f"the template is over {MAX_TEMPLATE_BYTES // 1024} KiB"
    env = _HTML if autoescape else _TEXT
    try:
        ast = env.parse(source)
        problem = _static_problem(ast)
        if problem is None:
            _compiled(source, autoescape)
    except TemplateSyntaxError as exc:
        return f"syntax error on line {exc.lineno}: {exc.message}"
    except (RecursionError, MemoryError):
        return "the template nests too deeply to be read"
    except TemplateError as exc:
        return f"cannot be compiled: {exc}"
    return problem


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, autoescape: bool) -> Any:
    """The template with the runtime checks woven in; only for sources :func:`_refusal`
    passed."""
    env = _HTML if autoescape else _TEXT
    ast = _RuntimeChecks().visit(env.parse(source))
    return env.template_class.from_code(env, env.compile(ast), env.make_globals(None), None)


def check_template(t: StepTemplate, field: str) -> None:
    """Compile every part of every language; :class:`TemplateRefused` naming the first part
    (``<field>.<language>.<part>``) that fails or reaches for what a template may not."""
    if not t.languages:
        raise TemplateRefused(field, "no language has a template")
    if t.fallback_language not in t.languages:
        raise TemplateRefused(
            f"{field}.fallback_language",
            f"the fallback language {t.fallback_language[:20]!r} has no template",
        )
    for lang, loc in t.languages.items():
        for part in _parts(loc):
            where = f"{field}.{lang}.{part.name}"
            _parse(part, where)


def choose_language(t: StepTemplate, language: str) -> str:
    """The template's language for ``language``: itself, else its primary subtag (``es-MX`` →
    ``es``), else the fallback.  Tags compare case-insensitively (RFC 5646 §2.1.1)."""
    by_lower = {tag.lower(): tag for tag in t.languages}
    wanted = language.replace("_", "-").lower()
    for candidate in (wanted, wanted.split("-")[0]):
        if candidate in by_lower:
            return by_lower[candidate]
    return t.fallback_language


def _render_part(part: _Part, variables: Mapping[str, Any], where: str) -> str:
    template = _compiled(part.source, part.env.autoescape is True)
    budget_token = _budget.set(_Budget())
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateRefused(where, f"the output is over {MAX_OUTPUT // 1024} KiB")
            out.append(chunk)
        return "".join(out)
    except SecurityError as exc:
        raise TemplateRefused(where, f"not allowed: {exc}") from None
    except RecursionError:
        raise TemplateRefused(where, "not allowed: the template recurses too deeply") from None
    finally:
        _budget.reset(budget_token)


def _missing_names(part: _Part, variables: Mapping[str, Any]) -> list[str]:
    """Every variable the part uses without a value: one more render that records the
    missing names instead of stopping at the first."""
    template = _compiled(part.source, part.env.autoescape is True)
    found: set[str] = set()
    token = _missing.set(found)
    budget_token = _budget.set(_Budget())
    try:
        for _ in template.generate(variables):
            pass
    except Exception:  # whatever stopped it, the names recorded so far count
        logging.getLogger(__name__).debug("collecting missing names stopped", exc_info=True)
    finally:
        _missing.reset(token)
        _budget.reset(budget_token)
    ast = part.env.parse(part.source)
    unguarded = set(find_undeclared_variables(ast)) - _guarded_names(ast)
    found |= unguarded - set(variables) - set(part.env.globals)
    return sorted(found)


def _guarded_names(ast: nodes.Template) -> set[str]:
    """Names a template only uses behind ``default`` or ``is defined`` (optional ones)."""
    guarded: set[str] = set()
    for node in ast.find_all(nodes.Filter | nodes.Test):  # type: ignore[arg-type]
        if node.name in ("default", "d", "defined", "undefined") and isinstance(
            node.node, nodes.Name
        ):
            guarded.add(node.node.name)
    return guarded


def render(
    t: StepTemplate, language: str, variables: Mapping[str, Any], *, field: str = "template"
) -> Rendered:
    """The step's message for one enrolment: :class:`MissingVariables` with every name that
    has no value, :class:`TemplateRefused` for what the sandbox stops."""
    lang = choose_language(t, language)
    loc = t.languages.get(lang)
    if loc is None:
        raise TemplateRefused(f"{field}.fallback_language", f"no template in {lang[:20]!r}")
    results: dict[str, str] = {}
    missing: set[str] = set()
    for part in _parts(loc):
        where = f"{field}.{lang}.{part.name}"
        _parse(part, where)
        try:
            results[part.name] = _render_part(part, variables, where)
        except UndefinedError:
            missing.update(_missing_names(part, variables))
        except (TemplateRefused, MissingVariables):
            raise
        except Exception as exc:  # a filter given what it cannot take ('x'|xmlattr): refused,
            # never a 500 nor a step put back for ever
            raise TemplateRefused(where, f"cannot be rendered: {exc}"[:300]) from None
    if missing:
        raise MissingVariables(field, sorted(missing))
    return Rendered(
        language=lang,
        subject=results.get("subject"),
        text=results["text"],
        html=results.get("html"),
    )


def preview(
    t: StepTemplate, language: str, sample: Mapping[str, Any]
) -> tuple[Rendered | None, list[str]]:
    """What :func:`render` makes of ``sample``, or None and the missing variables' names;
    a template that is refused raises :class:`TemplateRefused` as at definition."""
    try:
        return render(t, language, sample), []
    except MissingVariables as exc:
        return None, exc.missing
