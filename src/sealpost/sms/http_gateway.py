"""The HTTP gateway adapter: an SMS operator reached by one HTTP request per message (or per
segment), described by configuration instead of code.

A gateway is a :class:`RequestTemplate`: method, URL, headers and a form or JSON body whose
string values are small templates over a fixed set of fields (:data:`FIELDS`), plus where the
operator's message id is read in the answer.  The templates are sandboxed by construction:
``{name}`` only names one of those fields (no attribute or index access, unlike
``str.format``), a JSON body is a JSON value whose *strings* are rendered one by one (a text
cannot break out of its string), and a header value cannot carry a line break.

What an answer means (RFC 9110 §15):

- 2xx: the operator took it; its message id(s) are read by ``id_path``.
- 429 (RFC 6585 §4), 408, 5xx, a timeout, a refused connection: :class:`TemporaryFailure`,
  with ``Retry-After`` (RFC 9110 §10.2.3, seconds or an HTTP date) honoured.
- 401, 403, 407, 3xx: the gateway refuses *us* (credentials, URL), not the message:
  temporary too, so that messages wait for the operator to fix the configuration instead of
  being reported undeliverable.
- Any other 4xx: the gateway refused the message (an invalid number...):
  :class:`PermanentFailure` with the HTTP status and an excerpt of the body.

A read timeout is ambiguous (the gateway may have taken the request); it is still temporary,
as for SMPP, and a template can pass ``{sms_id}`` in an idempotency header for gateways that
honour one.  In per-segment mode, segments the operator took are never sent again: a segment
still throttled after an earlier one was taken (``segment_retries`` in place) raises a
:class:`TemporaryFailure` whose ``taken`` names the segments taken, and the next attempt sends
only the others (``OutboundSms.taken``); a segment refused after an earlier one was taken is
:class:`PartialSubmission` (a permanent failure) carrying the ids that were taken.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from sealpost.config import Settings
from sealpost.sms.providers import (
    OutboundSms,
    PermanentFailure,
    Submitted,
    TemporaryFailure,
)

PROVIDER = "http"

FIELDS = frozenset({"to", "to_digits", "from", "text", "sms_id", "segment", "segments"})
"""What a template may name: ``to`` (E.164 with ``+``), ``to_digits`` (without it), ``from``,
``text`` (the segment's text per segment, the whole text per message), ``sms_id``,
``segment`` (0-based index; 0 per message) and ``segments`` (their count)."""

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
EXCERPT_CHARS = 300
TEMPORARY_STATUSES = frozenset({401, 403, 407, 408, 425, 429})


class TemplateError(ValueError):
    """A template names an unknown field or has an unbalanced brace: refused at startup."""


class PartialSubmission(PermanentFailure):
    """Per segment: a later segment was refused (or stayed unreachable) after earlier ones
    were taken.  Retrying would send those twice, so it is final; ``message_ids`` are the
    operator ids of the segments taken (their reports may still arrive)."""

    def __init__(
        self,
        reason: str,
        *,
        status: str,
        message_ids: Sequence[str],
        taken: Mapping[int, str] | None = None,
    ):
        super().__init__(reason, status=status, taken=taken)
        self.message_ids = list(message_ids)


def check_template(template: str) -> None:
    """Raise :class:`TemplateError` unless every placeholder names one of :data:`FIELDS`."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(0) in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise TemplateError(f"unbalanced brace in template {template!r}")
        if name not in FIELDS:
            raise TemplateError(f"unknown field {{{name}}} in template (known: {sorted(FIELDS)})")


def render(template: str, values: Mapping[str, str], quote: Callable[[str], str] = str) -> str:
    """Substitute ``{field}`` with ``quote(values[field])``; ``{{`` and ``}}`` are braces."""

    def one(match: re.Match[str]) -> str:
        piece = match.group(0)
        if piece == "{{":
            return "{"
        if piece == "}}":
            return "}"
        name = match.group(1)
        if name is None or name not in FIELDS:
            raise TemplateError(f"bad placeholder {piece!r}")
        return quote(values[name])

    return _PLACEHOLDER.sub(one, template)


def _render_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, list):
        return [_render_json(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _render_json(v, values) for k, v in value.items()}
    return value


def _json_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _json_strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _json_strings(v)]
    return []


def read_pointer(document: Any, pointer: str) -> list[str]:
    """The string(s) at ``pointer`` (RFC 6901, ``~1`` for ``/`` and ``~0`` for ``~``) with
    one extension: a ``*`` token maps the rest of the pointer over an array, so
    ``/messages/*/message-id`` reads one id per element.  Numbers count as strings."""
    if pointer == "":
        tokens: list[str] = []
    elif pointer.startswith("/"):
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    else:
        raise ValueError(f"a JSON pointer starts with '/': {pointer!r}")

    def walk(node: Any, rest: list[str]) -> list[str]:
        if not rest:
            if isinstance(node, bool) or node is None:
                return []
            if isinstance(node, str | int):
                return [str(node)]
            if isinstance(node, list):
                return [s for item in node for s in walk(item, [])]
            return []
        head, tail = rest[0], rest[1:]
        if head == "*" and isinstance(node, list):
            return [s for item in node for s in walk(item, tail)]
        if isinstance(node, dict) and head in node:
            return walk(node[head], tail)
        if isinstance(node, list) and head.isdigit() and int(head) < len(node):
            return walk(node[int(head)], tail)
        return []

    return walk(document, tokens)


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str


@dataclass(frozen=True)
class BearerAuth:
    token: str


@dataclass(frozen=True)
class RequestTemplate:
    """How to submit to one gateway.  Every string in ``url``, ``headers`` and the body is a
    template over :data:`FIELDS` (checked when the template is made)."""

    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Literal["form", "json", "none"] = "json"
    form: Mapping[str, str] = field(default_factory=dict)
    """Form fields (``application/x-www-form-urlencoded``) when ``body == "form"``."""
    json_body: Any = None
    """A JSON value whose strings are templates, when ``body == "json"``."""
    per: Literal["message", "segment"] = "message"
    """One request per message (the gateway splits it and reports the message as a whole:
    one id) or per segment (one id per segment, as over SMPP)."""
    response: Literal["json", "form", "text"] = "json"
    id_path: str = "/id"
    """Where the operator's id is: a JSON pointer (with ``*`` over arrays), a form key, or
    unused for ``text`` (the whole body, stripped)."""
    auth: BasicAuth | BearerAuth | None = None

    def __post_init__(self) -> None:
        if not self.method.isalpha():
            raise TemplateError(f"not an HTTP method: {self.method!r}")
        strings = [self.url, *self.headers.values(), *self.form.values()]
        strings += _json_strings(self.json_body)
        for s in strings:
            check_template(s)
        for name, value in self.headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise TemplateError(f"not a header name: {name!r}")
            if not value.isascii() or "{text}" in value:  # RFC 9110 §5.5: visible ASCII
                raise TemplateError(
                    f"header {name}: a header value is ASCII and never carries the text "
                    "(put {text} in the body)"
                )
        if self.response == "json" and self.id_path and not self.id_path.startswith("/"):
            raise TemplateError(f"id_path must be a JSON pointer: {self.id_path!r}")

    def build(self, sms: OutboundSms, segment: int | None) -> httpx.Request:
        """The request for the whole message (``segment is None``) or one segment."""
        values = {
            "to": sms.to,
            "to_digits": sms.to.lstrip("+"),
            "from": sms.sender,
            "text": sms.text if segment is None else sms.segments[segment],
            "sms_id": sms.sms_id,
            "segment": str(segment or 0),
            "segments": str(len(sms.segments)),
        }
        url = render(self.url, values, lambda v: urllib.parse.quote(v, safe=""))
        headers: dict[str, str] = {}
        for name, template in self.headers.items():
            value = render(template, values)
            if not value.isascii() or any(c in value for c in "\r\n\0"):
                # the gateway's configuration, not the operator, cannot send it: the SMS waits
                # (and the log says why) until the template is fixed; never a NonDelivery
                raise TemporaryFailure(
                    f"header {name} would not be a valid header value: fix SMS_HTTP_HEADERS",
                    status="configuration",
                )
            headers[name] = value
        if isinstance(self.auth, BearerAuth):
            headers["Authorization"] = f"Bearer {self.auth.token}"
        elif isinstance(self.auth, BasicAuth):  # RFC 7617
            pair = f"{self.auth.username}:{self.auth.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        content: bytes | None = None
        if self.body == "form":
            pairs = [(k, render(v, values)) for k, v in self.form.items()]
            content = urllib.parse.urlencode(pairs).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif self.body == "json":
            rendered = _render_json(self.json_body, values)
            content = json.dumps(rendered, ensure_ascii=False, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        return httpx.Request(self.method.upper(), url, headers=headers, content=content)

    def message_ids(self, response: httpx.Response) -> list[str]:
        """The operator id(s) in a 2xx answer; empty when they cannot be read."""
        if self.response == "text":
            text = response.text.strip()
            return [text] if text else []
        if self.response == "form":
            values = urllib.parse.parse_qs(response.text, keep_blank_values=False)
            return [v for v in values.get(self.id_path, []) if v]
        try:
            document = response.json()
        except ValueError:
            return []
        return [i for i in read_pointer(document, self.id_path) if i]


def twilio_preset(
    url: str, account_sid: str, auth_token: str, status_callback: str | None = None
) -> RequestTemplate:
    """Twilio's Messages resource: ``POST .../2010-04-01/Accounts/{AccountSid}/Messages.json``
    with the form ``To``, ``From``, ``Body`` (and ``StatusCallback``, where Twilio posts the
    delivery reports), basic auth with the account SID and auth token; the answer's ``sid``
    is the message id.  Twilio splits long texts itself and reports the message as a whole,
    so it is one request per message."""
    form = {"To": "{to}", "From": "{from}", "Body": "{text}"}
    if status_callback:
        form["StatusCallback"] = status_callback.replace("{", "{{").replace("}", "}}")
    return RequestTemplate(
        url=url,
        body="form",
        form=form,
        per="message",
        response="json",
        id_path="/sid",
        auth=BasicAuth(account_sid, auth_token),
    )


def json_preset(url: str, token: str | None = None) -> RequestTemplate:
    """A generic JSON gateway: ``POST {"to", "from", "text", "reference"}`` with the SMS id as
    ``Idempotency-Key``, an optional bearer token, and ``{"id": ...}`` in the answer."""
    return RequestTemplate(
        url=url,
        headers={"Idempotency-Key": "{sms_id}"},
        body="json",
        json_body={"to": "{to}", "from": "{from}", "text": "{text}", "reference": "{sms_id}"},
        per="message",
        response="json",
        id_path="/id",
        auth=BearerAuth(token) if token else None,
    )


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\r", " ").replace("\n", " ")
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


class HttpGatewayProvider:
    """:class:`~sealpost.sms.providers.SmsProvider` over HTTP (``httpx``, synchronous: the
    sending loop calls ``submit`` from its worker threads)."""

    name = PROVIDER

    def __init__(
        self,
        template: RequestTemplate,
        *,
        timeout: float = 10.0,
        segment_retries: int = 3,
        segment_retry_max_seconds: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.template = template
        self.segment_retries = segment_retries
        self.segment_retry_max_seconds = segment_retry_max_seconds
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )

    def submit(self, sms: OutboundSms) -> Submitted:
        """Send the message (or each segment); see the module docstring for what raises."""
        if self.template.per == "message":
            ids, status = self._send(sms, None)
            return self._submitted(sms, ids, status)
        taken: dict[int, str] = dict(sms.taken)  # earlier attempts': never sent again
        fresh: dict[int, str] = {}
        status = ""
        for index in range(len(sms.segments)):
            if index in taken:
                continue
            attempt = 0
            while True:
                try:
                    ids, status = self._send(sms, index)
                    break
                except TemporaryFailure as exc:
                    attempt += 1
                    if not taken or attempt > self.segment_retries:
                        # The message waits; what was taken is recorded and not sent again.
                        exc.taken = fresh
                        raise
                    delay = exc.retry_after if exc.retry_after is not None else 2.0**attempt / 4
                    self._sleep(min(delay, self.segment_retry_max_seconds))
                except PermanentFailure as exc:
                    if not taken:
                        raise
                    raise PartialSubmission(
                        f"segment {index + 1} of {len(sms.segments)} refused: {exc.reason}",
                        status=exc.status,
                        taken=fresh,
                        message_ids=[taken[i] for i in sorted(taken)],
                    ) from exc
            taken[index] = fresh[index] = ids[0] if ids else ""
        return self._submitted(sms, [taken[i] for i in range(len(sms.segments))], status)

    def _submitted(self, sms: OutboundSms, ids: list[str], status: str) -> Submitted:
        details = {"http_status": status}
        if not ids or any(not i for i in ids):
            # Taken (2xx) but no id to match reports with: the message ends "unconfirmed".
            details["unreadable_message_id"] = "true"
        return Submitted(message_ids=ids, provider=PROVIDER, details=details)

    def _send(self, sms: OutboundSms, segment: int | None) -> tuple[list[str], str]:
        request = self.template.build(sms, segment)
        try:
            response = self._client.send(request)
        except httpx.ConnectTimeout as exc:
            raise TemporaryFailure(f"gateway connect timeout: {exc}", status="timeout") from exc
        except httpx.TimeoutException as exc:
            raise TemporaryFailure(f"gateway timed out: {exc!r}", status="timeout") from exc
        except httpx.TransportError as exc:
            raise TemporaryFailure(f"gateway unreachable: {exc!r}", status="unreachable") from exc
        code = response.status_code
        status = str(code)
        if 200 <= code < 300:
            return self.template.message_ids(response), status
        reason = f"HTTP {code}: {excerpt(response)}"
        if code in TEMPORARY_STATUSES or code >= 500 or code < 400:
            raise TemporaryFailure(reason, status=status, retry_after=retry_after(response))
        raise PermanentFailure(reason, status=status)

    def close(self) -> None:
        self._client.close()


TWILIO_CALLBACK_PATH = "/sms/callbacks/twilio"
JSON_CALLBACK_PATH = "/sms/callbacks/json"


def callback_base_url(settings: Settings) -> str:
    """Where the gateway reaches this Sealpost's callbacks (Twilio signs this exact URL)."""
    return (settings.sms_http_callback_url or settings.resolved_public_url).rstrip("/")


def callback_secret(settings: Settings) -> str | None:
    """The secret callbacks are checked with (Twilio's: its auth token)."""
    secret = settings.sms_http_callback_secret or (
        settings.sms_http_password if settings.sms_http_preset == "twilio" else None
    )
    return secret.get_secret_value() if secret else None


def template_from_settings(settings: Settings) -> RequestTemplate:
    """The preset named by ``SMS_HTTP_PRESET`` with the ``SMS_HTTP_*`` overrides applied;
    raises :class:`TemplateError` for a template that names an unknown field."""
    if not settings.sms_http_url:
        raise TemplateError("SEALPOST_SMS_HTTP_URL is not set")
    password = settings.sms_http_password.get_secret_value() if settings.sms_http_password else ""
    token = settings.sms_http_token.get_secret_value() if settings.sms_http_token else None
    if settings.sms_http_preset == "twilio":
        base = twilio_preset(
            settings.sms_http_url,
            settings.sms_http_username or "",
            password,
            status_callback=callback_base_url(settings) + TWILIO_CALLBACK_PATH,
        )
    else:
        base = json_preset(settings.sms_http_url, token)
    changes: dict[str, Any] = {}
    if settings.sms_http_method:
        changes["method"] = settings.sms_http_method
    if settings.sms_http_headers:
        changes["headers"] = {**base.headers, **settings.sms_http_headers}
    if settings.sms_http_body_template:
        body = json.loads(settings.sms_http_body_template)
        if body is None:  # "null": no body (a GET gateway)
            changes["body"] = "none"
        elif base.body == "form":
            if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
                raise TemplateError("a form body template is a JSON object of strings")
            changes["form"] = body
        else:
            changes["json_body"] = body
    if settings.sms_http_per:
        changes["per"] = settings.sms_http_per
    if settings.sms_http_response:
        changes["response"] = settings.sms_http_response
    if settings.sms_http_id_path is not None:
        changes["id_path"] = settings.sms_http_id_path
    if settings.sms_http_auth == "none":
        changes["auth"] = None
    elif settings.sms_http_auth == "basic":
        changes["auth"] = BasicAuth(settings.sms_http_username or "", password)
    elif settings.sms_http_auth == "bearer":
        changes["auth"] = BearerAuth(token or "")
    return dataclasses.replace(base, **changes)


def provider_from_settings(settings: Settings) -> HttpGatewayProvider:
    return HttpGatewayProvider(
        template_from_settings(settings), timeout=settings.sms_http_timeout_seconds
    )
