"""Text at the HTTP boundary: the constrained string types every request field uses.

A client's text ends up in three places that each refuse some characters, and refuse them
late, as a server error, with nothing stored: PostgreSQL refuses NUL in ``text`` columns;
Python's email package refuses a header value with a line break, and counts U+0085 (NEL),
U+2028 and U+2029 as line breaks besides CR and LF (RFC 5322 §2.2: a header field is one
line); an HTTP header refuses every control character (RFC 9110 §5.5), so a stored
``frame-ancestors`` origin with one broke every signing page of its tenant.  So every text
field is checked here, once, where a 422 can name it:

- :data:`SingleLine` (names, titles, subjects, file names, labels, ids): no C0 control
  (TAB included), no DEL, no C1 control (U+0085 included), no U+2028/U+2029;
- :data:`MultiLine` (message bodies, consent texts, reasons): TAB, LF and CR allowed (and the
  Unicode line separators), every other control refused.

Each states its rule in the OpenAPI document as a ``pattern``, so a generated or hand-written
request that follows the schema is accepted, and one that breaks it is refused with a 422
problem whose ``errors`` name the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

_CONTROLS = frozenset(range(0x00, 0x20)) | {0x7F} | frozenset(range(0x80, 0xA0))
_LINE_SEPARATORS = frozenset({0x2028, 0x2029})
_MULTILINE_ALLOWED = frozenset({0x09, 0x0A, 0x0D})

SINGLE_LINE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
"""The rule of :data:`SingleLine` as an ECMA-262 (JSON Schema) pattern."""
MULTILINE_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
"""The rule of :data:`MultiLine` as an ECMA-262 (JSON Schema) pattern."""


def refused_character(value: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The position and the character of ``value`` that the rule refuses first, if any."""
    for position, char in enumerate(value):
        point = ord(char)
        if multiline and point in _MULTILINE_ALLOWED:
            continue
        if point in _CONTROLS or (not multiline and point in _LINE_SEPARATORS):
            return position, char
    return None


class Checked:
    """Pydantic metadata: :meth:`check` runs after the type's own validation (raising
    ``ValueError`` with words a developer can act on; it may normalise), :meth:`describe`
    says the same in the JSON schema, so that the OpenAPI document states the rule the API
    applies."""

    def check(self, value: str) -> str:
        raise NotImplementedError

    def describe(self, target: JsonSchemaValue) -> None:
        raise NotImplementedError

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        found = handler(schema)
        self.describe(handler.resolve_ref_schema(found))
        return found


@dataclass(frozen=True)
class PlainText(Checked):
    """Pydantic metadata: refuse the control characters (and, unless ``multiline``, the line
    breaks) of :func:`refused_character`, and say so in the JSON schema."""

    multiline: bool = False

    def check(self, value: str) -> str:
        found = refused_character(value, multiline=self.multiline)
        if found is not None:
            position, char = found
            allowed = "; TAB, LF and CR are allowed" if self.multiline else ""
            kind = "a control character" if self.multiline else "a line break or control character"
            raise ValueError(
                f"must not contain {kind}: U+{ord(char):04X} at position {position}{allowed}"
            )
        return value

    def describe(self, target: JsonSchemaValue) -> None:
        if target.get("type") == "string":
            target["pattern"] = MULTILINE_PATTERN if self.multiline else SINGLE_LINE_PATTERN


SingleLine = Annotated[str, PlainText()]
"""One line of text: it may end up in an email header, an HTTP header, a file name."""
MultiLine = Annotated[str, PlainText(multiline=True)]
"""Running text: a message, a consent text, a reason."""


@dataclass(frozen=True)
class Choice(Checked):
    """Pydantic metadata: one of ``values`` (or of what it returns, read when a request is
    checked and when the schema is drawn: registries fill up as domains import); with
    ``empty``, also ``""``, which a filter reads as "any" (``?status=`` is what a form or a
    client with an unset filter sends)."""

    values: tuple[str, ...] | Callable[[], Iterable[str]]
    empty: bool = False

    def allowed(self) -> list[str]:
        values = self.values if isinstance(self.values, tuple) else tuple(self.values())
        return ["", *values] if self.empty else list(values)

    def check(self, value: str) -> str:
        allowed = self.allowed()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(v for v in allowed if v)}")
        return value

    def describe(self, target: JsonSchemaValue) -> None:
        target["enum"] = self.allowed()


BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


@dataclass(frozen=True)
class Matches(Checked):
    """Pydantic metadata: the whole value matches ``pattern`` (an ECMA-262 pattern that
    Python reads alike; it goes into the schema), else ``message`` names what is wrong."""

    pattern: str
    message: str

    def check(self, value: str) -> str:
        if re.fullmatch(self.pattern, value) is None:
            raise ValueError(self.message)
        return value

    def describe(self, target: JsonSchemaValue) -> None:
        target["pattern"] = self.pattern


_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class Base64Text(Matches):
    """:data:`BASE64_PATTERN` in the schema; checked here in linear time and constant memory.
    Python's ``re`` pushes a backtracking frame per repetition of the pattern's group: about
    30 bytes of memory per byte checked (a 32 MiB document cost 960 MiB) with the GIL held."""

    def check(self, value: str) -> str:
        if len(value) % 4 or _BASE64_TEXT.fullmatch(value) is None:
            raise ValueError(self.message)
        return value


Base64 = Annotated[
    str,
    Base64Text(BASE64_PATTERN, "not valid base64 (RFC 4648 §4: A-Z a-z 0-9 + /, = padding)"),
]
"""Bytes as base64 text (attachments, raw messages, PDFs)."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
ORIGIN_PATTERN = (
    rf"^(https?)://({_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::({_PORT}))?/?$"
)
_ORIGIN = re.compile(ORIGIN_PATTERN)


def origin(value: str) -> str:
    """``value`` as an exact origin ``scheme://host[:port]`` (RFC 6454 §6.2, lower-case host,
    no default port dropped or added), or ValueError.  What a CSP ``frame-ancestors`` host
    source and ``postMessage``'s target accept alike: no wildcard, no path, no user, no
    control character; a non-ASCII host is given in its A-label form (``xn--...``)."""
    found = _ORIGIN.fullmatch(value)
    if found is None:
        raise ValueError(
            "not an origin: give scheme://host[:port] (http or https, an ASCII host name or "
            "IP address, no path), e.g. https://crm.example.com"
        )
    scheme, host, port = found.groups()
    if host.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
    elif len(host) > 253:
        raise ValueError("the host name is longer than 253 characters")
    return f"{scheme}://{host.lower()}{f':{port}' if port else ''}"


@dataclass(frozen=True)
class OriginRule(Checked):
    """Pydantic metadata: :func:`origin`, normalising, with its pattern in the schema."""

    def check(self, value: str) -> str:
        return origin(value)

    def describe(self, target: JsonSchemaValue) -> None:
        target.update(pattern=ORIGIN_PATTERN, maxLength=300)


Origin = Annotated[str, OriginRule()]
"""A web origin a page may be embedded by (``frame-ancestors``) and post messages to."""

RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(RFC3339_PATTERN, value):
        return value
    raise ValueError("must be an RFC 3339 date-time with its zone, e.g. 2026-11-23T10:00:00Z")


Moment = Annotated[datetime, BeforeValidator(_rfc3339)]
"""A point in time as JSON Schema's ``date-time`` says (RFC 3339 §5.6): a string, with its
zone; not a number (pydantic would read one as a Unix time), not a local time."""

EmailAddress = Annotated[
    str,
    PlainText(),
    Field(min_length=3, max_length=320),
    WithJsonSchema({"type": "string", "format": "email", "minLength": 3, "maxLength": 320}),
]
"""An email address (``local@domain``, RFC 5321 §4.1.2; the domain checked where it is used).
Its schema says ``format: email`` only: that already excludes every control character, and
a pattern beside it makes generators search long for a value that fits both."""

MAX_BIGINT = 2**63 - 1
"""The largest position or size a database column holds (PostgreSQL ``bigint``)."""
MAX_INTEGER = 2**31 - 1
"""The largest version or count a database column holds (PostgreSQL ``integer``)."""

Identifier = Annotated[str, PlainText(), Path(max_length=100)]
"""An id in a path: a text that is not an id this API gave is a 404, a control character a
422 (before it could reach the database)."""
