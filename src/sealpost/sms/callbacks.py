"""Delivery reports posted back by an HTTP gateway: authenticated, parsed, handed to the sink.

Two shapes, each a pure function (bytes and headers in, a :class:`DeliveryReport` out, or an
error) so that any framework can mount them; :func:`router` mounts them on FastAPI.

- **Twilio's status callback** (``application/x-www-form-urlencoded``: ``MessageSid``,
  ``MessageStatus``, ``ErrorCode``, optionally ``RawDlrDoneDate``), authenticated as Twilio
  documents ``X-Twilio-Signature`` (https://www.twilio.com/docs/usage/security, "Validating
  signatures from Twilio"): the full URL Twilio called (scheme, host, path, query), followed by
  every POST parameter sorted by name (case-sensitive byte order), each as name then value
  with no delimiter; HMAC-SHA1 of that string keyed with the auth token, base64.  Like
  Twilio's own validators, the URL is also tried with its port removed and with the scheme's
  default port added, since proxies differ on whether Twilio's URL carried one.  Twilio's
  signature has no timestamp: a replayed genuine report is a duplicate, which the sink ignores.
- **A generic JSON report** ``{"message_id", "status", "error_code"?, "done_at"?}`` signed
  with Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``:
  HMAC-SHA256 over ``id.timestamp.body``, the scheme Sealpost signs its own webhooks with),
  verified by the ``standardwebhooks`` library, which also refuses a timestamp more than five
  minutes off (a stale or replayed report).

Answers from handsets (mobile-originated messages) come the same two ways, on their own
paths: Twilio's incoming-message webhook (``From``, ``To``, ``Body``, same signature) at
``/sms/callbacks/twilio/inbound``, answered with an empty TwiML ``<Response/>`` (Twilio sends
no automatic answer then), and ``{"from", "to", "text"}`` signed with Standard Webhooks at
``/sms/callbacks/json/inbound``; each is handed to the :class:`InboundSink`.

A missing, forged or stale signature is 401 and records nothing.  The route answers 2xx only
after ``sink.report`` returned, i.e. once the report is durable (the sink's contract), so a
gateway that gets no 2xx sends it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.concurrency import run_in_threadpool

from sealpost.config import Settings
from sealpost.errors import ContentTooLarge, InvalidInput, Unauthorized
from sealpost.logging import get_logger
from sealpost.sms.http_gateway import (
    JSON_CALLBACK_PATH,
    PROVIDER,
    TWILIO_CALLBACK_PATH,
    callback_base_url,
    callback_secret,
)
from sealpost.sms.providers import (
    DeliveryReport,
    InboundSink,
    InboundSms,
    ReportSink,
    ReportState,
)

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""A delivery report is a few hundred bytes; anything much larger is not one."""

TWILIO_STATES: Mapping[str, ReportState] = {
    # Twilio's MessageStatus values (https://www.twilio.com/docs/messaging/api/message-resource,
    # "Message Status values"): before the carrier, nothing is decided ...
    "accepted": "accepted",
    "scheduled": "accepted",
    "queued": "accepted",
    "sending": "accepted",
    "sent": "enroute",  # handed to the carrier: still no word from the handset
    # ... and the finals.
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "rejected",  # Twilio could not send it at all (never reached a carrier)
    "canceled": "deleted",
}

JSON_STATES: Mapping[str, ReportState] = {
    "accepted": "accepted",
    "queued": "accepted",
    "enroute": "enroute",
    "sent": "enroute",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "rejected",
    "rejected": "rejected",
    "expired": "expired",
    "deleted": "deleted",
    "unknown": "unknown",
}


# -- Twilio ------------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` to ``url``, as Twilio computes it."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url, urllib.parse.urlunsplit(parts._replace(netloc=prefix + host))]
    if default is not None and parts.port is None:
        variants.append(urllib.parse.urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return list(dict.fromkeys(variants))


def verify_twilio(auth_token: str, url: str, params: Sequence[tuple[str, str]], sig: str) -> bool:
    """Whether ``sig`` is Twilio's signature of this request (compared in constant time)."""
    given = sig.strip().encode()
    return any(
        hmac.compare_digest(twilio_signature(auth_token, u, params).encode(), given)
        for u in _url_variants(url)
    )


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the callback body is not a URL-encoded form") from exc


def _twilio_done(value: str) -> datetime | None:
    """``RawDlrDoneDate``: the carrier's done date, ``YYMMDDhhmm`` (SMPP receipt style), UTC."""
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_twilio_report(
    body: bytes,
    url: str,
    signature: str | None,
    auth_token: str | None,
    *,
    received_at: datetime,
) -> DeliveryReport:
    """Authenticate and read one Twilio status callback (``url``: the full URL it was posted
    to, as Twilio saw it).  Raises :class:`Unauthorized` or :class:`InvalidInput`."""
    if not auth_token:
        raise Unauthorized("no callback secret is configured")
    params = _form(body)
    if not signature or not verify_twilio(auth_token, url, params, signature):
        raise Unauthorized("the X-Twilio-Signature does not match")
    fields = dict(params)
    sid = fields.get("MessageSid") or fields.get("SmsSid") or ""
    status = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
    if not sid:
        raise InvalidInput("MessageSid is missing")
    state = TWILIO_STATES.get(status)
    if state is None:
        raise InvalidInput(f"MessageStatus {status!r} is not a known Twilio status")
    done = _twilio_done(fields.get("RawDlrDoneDate", ""))
    return DeliveryReport(
        provider=PROVIDER,
        message_id=sid,
        state=state,
        at=done or received_at,
        status=fields.get("ErrorCode", ""),
        raw=body,
    )


def parse_twilio_inbound(
    body: bytes,
    url: str,
    signature: str | None,
    auth_token: str | None,
    *,
    received_at: datetime,
) -> InboundSms:
    """Authenticate and read one Twilio incoming-message webhook (``From``, ``To``,
    ``Body``).  Raises :class:`Unauthorized` or :class:`InvalidInput`."""
    if not auth_token:
        raise Unauthorized("no callback secret is configured")
    params = _form(body)
    if not signature or not verify_twilio(auth_token, url, params, signature):
        raise Unauthorized("the X-Twilio-Signature does not match")
    fields = dict(params)
    if not fields.get("From") or not fields.get("To"):
        raise InvalidInput("From and To are required")
    return InboundSms(
        provider=PROVIDER,
        phone=fields["From"],
        destination=fields["To"],
        text=fields.get("Body", ""),
        at=received_at,
        raw=body,
    )


# -- generic JSON ------------------------------------------------------------------------------


def _verified_json(body: bytes, headers: Mapping[str, str], secret: str | None) -> dict[str, Any]:
    if not secret:
        raise Unauthorized("no callback secret is configured")
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    try:
        Webhook(secret).verify(body, lowered, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        log.warning("sms.callback_signature", reason=str(exc))
        raise Unauthorized("the webhook signature does not verify") from exc
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidInput("the body is not a JSON object")
    return document


def parse_json_inbound(
    body: bytes, headers: Mapping[str, str], secret: str | None, *, received_at: datetime
) -> InboundSms:
    """Authenticate (Standard Webhooks) and read ``{"from", "to", "text"}``."""
    document = _verified_json(body, headers, secret)
    values = [document.get(k) for k in ("from", "to", "text")]
    if not all(isinstance(v, str) for v in values) or not values[0] or not values[1]:
        raise InvalidInput("from, to (non-empty) and text: strings are required")
    phone, destination, text = (str(v) for v in values)
    return InboundSms(PROVIDER, phone, destination, text, received_at, body)


def parse_json_report(
    body: bytes, headers: Mapping[str, str], secret: str | None, *, received_at: datetime
) -> DeliveryReport:
    """Authenticate (Standard Webhooks) and read one generic JSON report.  Raises
    :class:`Unauthorized` or :class:`InvalidInput`."""
    if not secret:
        raise Unauthorized("no callback secret is configured")
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() in wanted}
    try:
        Webhook(secret).verify(body, lowered, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        log.warning("sms.report_signature", reason=str(exc))  # stale, forged, malformed...
        raise Unauthorized("the webhook signature does not verify") from exc
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        raise InvalidInput("the report is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidInput("the report is not a JSON object")
    message_id = document.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidInput("message_id: a non-empty string is required")
    state = JSON_STATES.get(str(document.get("status")))
    if state is None:
        raise InvalidInput(f"status: one of {sorted(JSON_STATES)} is required")
    at = received_at
    done_at = document.get("done_at")
    if done_at is not None:
        try:
            at = datetime.fromisoformat(str(done_at))
        except ValueError as exc:
            raise InvalidInput("done_at: an RFC 3339 date-time is required") from exc
        if at.tzinfo is None:
            raise InvalidInput("done_at: an RFC 3339 date-time with its offset is required")
    error_code = document.get("error_code")
    return DeliveryReport(
        provider=PROVIDER,
        message_id=message_id,
        state=state,
        at=at,
        status="" if error_code is None else str(error_code),
        raw=body,
    )


# -- FastAPI -----------------------------------------------------------------------------------


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, refused past ``limit`` before the rest is read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ContentTooLarge(f"a delivery report is at most {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def router(
    sink: ReportSink,
    settings: Settings,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    inbound: InboundSink | None = None,
) -> APIRouter:
    """``POST /sms/callbacks/twilio`` and ``POST /sms/callbacks/json``: each answers 200 once
    ``sink.report`` returned (the report is durable), 401 for a bad signature, 422 for a
    report it cannot read; errors are SealpostErrors, answered by the app's handlers."""
    api = APIRouter(tags=["sms"])
    base = callback_base_url(settings)
    secret = callback_secret(settings)

    async def deliver(report: DeliveryReport) -> Response:
        await run_in_threadpool(sink.report, report)
        log.debug("sms.report", message_id=report.message_id, state=report.state)
        return Response(status_code=200)

    @api.post(TWILIO_CALLBACK_PATH, include_in_schema=False)
    async def twilio_report(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        query = request.url.query
        url = base + TWILIO_CALLBACK_PATH + ("?" + query if query else "")
        signature = request.headers.get("x-twilio-signature")
        try:
            report = parse_twilio_report(
                body, url, signature, secret, received_at=datetime.now(UTC)
            )
        except Unauthorized:
            log.warning("sms.report_refused", route="twilio", url=url)
            raise
        return await deliver(report)

    @api.post(JSON_CALLBACK_PATH, include_in_schema=False)
    async def json_report(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        try:
            report = parse_json_report(body, request.headers, secret, received_at=datetime.now(UTC))
        except Unauthorized:
            log.warning("sms.report_refused", route="json")
            raise
        return await deliver(report)

    if inbound is None:
        return api

    @api.post(TWILIO_CALLBACK_PATH + "/inbound", include_in_schema=False)
    async def twilio_inbound(request: Request) -> Response:
        assert inbound is not None
        body = await _body(request, max_body_bytes)
        query = request.url.query
        url = base + TWILIO_CALLBACK_PATH + "/inbound" + ("?" + query if query else "")
        signature = request.headers.get("x-twilio-signature")
        try:
            message = parse_twilio_inbound(
                body, url, signature, secret, received_at=datetime.now(UTC)
            )
        except Unauthorized:
            log.warning("sms.inbound_refused", route="twilio", url=url)
            raise
        await run_in_threadpool(inbound.inbound, message)
        return Response('<?xml version="1.0" encoding="UTF-8"?><Response/>', media_type="text/xml")

    @api.post(JSON_CALLBACK_PATH + "/inbound", include_in_schema=False)
    async def json_inbound(request: Request) -> Response:
        assert inbound is not None
        body = await _body(request, max_body_bytes)
        try:
            message = parse_json_inbound(
                body, request.headers, secret, received_at=datetime.now(UTC)
            )
        except Unauthorized:
            log.warning("sms.inbound_refused", route="json")
            raise
        await run_in_threadpool(inbound.inbound, message)
        return Response(status_code=200)

    return api
