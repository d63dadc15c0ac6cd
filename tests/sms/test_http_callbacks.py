"""Delivery-report callbacks: the router served by a real uvicorn on 127.0.0.1, posted to by
httpx and by the gateway peer (tests/sms/http_peer.py), with a recording sink."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from sealpost.api import errors
from sealpost.config import Settings
from sealpost.errors import InvalidInput, Unauthorized
from sealpost.events.webhooks.headers import new_secret, webhook_headers
from sealpost.sms.callbacks import parse_json_report, parse_twilio_report, router, twilio_signature
from sealpost.sms.http_gateway import HttpGatewayProvider, twilio_preset
from sealpost.sms.providers import DeliveryReport, OutboundSms
from tests.sms.http_peer import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    GatewayPeer,
    documented_twilio_signature,
)

NOW = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)


class RecordingSink:
    """In memory (the durable sink is the sms domain's); can hold or fail ``report``."""

    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail = False
        self.lock = threading.Lock()

    def report(self, report: DeliveryReport) -> None:
        self.hold.wait(10)
        if self.fail:
            raise OSError("disk unavailable")
        with self.lock:
            self.reports.append(report)


@dataclass
class Callbacks:
    base: str
    sink: RecordingSink
    twilio_token: str
    whsec: str

    @property
    def twilio_url(self) -> str:
        return self.base + "/sms/callbacks/twilio"

    @property
    def json_url(self) -> str:
        return self.base + "/sms/callbacks/json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(sink: RecordingSink, settings: Settings, port: int) -> Iterator[None]:
    app = FastAPI()
    errors.install(app)
    app.include_router(router(sink, settings))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def twilio_callbacks() -> Iterator[Callbacks]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        sms_http_preset="twilio", sms_http_password=AUTH_TOKEN, sms_http_callback_url=base
    )
    sink = RecordingSink()
    yield from (Callbacks(base, sink, AUTH_TOKEN, "") for _ in serve(sink, settings, port))


@pytest.fixture
def json_callbacks() -> Iterator[Callbacks]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = new_secret()
    settings = Settings(sms_http_callback_secret=secret, sms_http_callback_url=base)
    sink = RecordingSink()
    yield from (Callbacks(base, sink, "", secret) for _ in serve(sink, settings, port))


def twilio_form(
    status: str = "delivered", error: str = "", sid: str = "SM" + "a" * 32
) -> dict[str, str]:
    return {  # not in sorted order: the signature sorts them
        "To": "+34600123456", "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01",
        "ErrorCode": error, "From": "+15005550006", "MessageSid": sid,
        "MessageStatus": status, "SmsSid": sid, "SmsStatus": status,
    }  # fmt: skip


def post_twilio(cb: Callbacks, form: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return httpx.post(cb.twilio_url, data=form, headers=headers, timeout=10)


# -- Twilio ------------------------------------------------------------------------------------


def test_twilios_documented_example_signature() -> None:
    # The example of https://www.twilio.com/docs/usage/security ("Validating signatures").
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}  # fmt: skip
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, list(params.items())) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_signed_twilio_callback_reaches_the_sink_once(twilio_callbacks: Callbacks) -> None:
    cb = twilio_callbacks
    form = twilio_form("undelivered", error="30003")
    signature = documented_twilio_signature(cb.twilio_token, cb.twilio_url, form)

    response = post_twilio(cb, form, signature)

    assert response.status_code == 200
    (report,) = cb.sink.reports
    assert report.provider == "http"
    assert report.message_id == form["MessageSid"]
    assert report.state == "undelivered"
    assert report.final
    assert report.status == "30003"
    assert urllib.parse.parse_qs(report.raw.decode(), keep_blank_values=True)["To"] == [
        "+34600123456"
    ]
    # The same genuine report again is another call: recorded again (the sink deduplicates).
    assert post_twilio(cb, form, signature).status_code == 200
    assert len(cb.sink.reports) == 2


@pytest.mark.parametrize("forgery", ["no header", "wrong token", "tampered status", "other url"])
def test_a_forged_twilio_callback_is_refused_and_nothing_recorded(
    twilio_callbacks: Callbacks, forgery: str
) -> None:
    cb = twilio_callbacks
    form = twilio_form("undelivered", error="30003")
    signature: str | None = documented_twilio_signature(cb.twilio_token, cb.twilio_url, form)
    if forgery == "no header":
        signature = None
    elif forgery == "wrong token":
        signature = documented_twilio_signature("not-the-token", cb.twilio_url, form)
    elif forgery == "tampered status":
        form = {**form, "MessageStatus": "delivered", "SmsStatus": "delivered", "ErrorCode": ""}
    else:
        signature = documented_twilio_signature(cb.twilio_token, cb.base + "/elsewhere", form)

    response = post_twilio(cb, form, signature)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert cb.sink.reports == []


def test_the_answer_waits_until_the_sink_has_the_report(twilio_callbacks: Callbacks) -> None:
    cb = twilio_callbacks
    cb.sink.hold.clear()
    form = twilio_form("delivered")
    signature = documented_twilio_signature(cb.twilio_token, cb.twilio_url, form)
    answers: list[int] = []
    poster = threading.Thread(
        target=lambda: answers.append(post_twilio(cb, form, signature).status_code)
    )
    poster.start()
    time.sleep(0.4)
    assert answers == []  # no 2xx while the sink has not returned
    cb.sink.hold.set()
    poster.join(10)
    assert answers == [200]
    assert len(cb.sink.reports) == 1


def test_a_report_the_sink_could_not_keep_is_not_acknowledged(twilio_callbacks: Callbacks) -> None:
    cb = twilio_callbacks
    cb.sink.fail = True
    form = twilio_form("delivered")
    response = post_twilio(
        cb, form, documented_twilio_signature(cb.twilio_token, cb.twilio_url, form)
    )
    assert response.status_code >= 500  # the gateway sends it again


def test_an_unknown_twilio_status_is_refused_unrecorded(twilio_callbacks: Callbacks) -> None:
    cb = twilio_callbacks
    form = twilio_form("teleported")
    response = post_twilio(
        cb, form, documented_twilio_signature(cb.twilio_token, cb.twilio_url, form)
    )
    assert response.status_code == 422
    assert cb.sink.reports == []


def test_the_gateway_posts_signed_reports_for_what_it_took(twilio_callbacks: Callbacks) -> None:
    """End to end: submit to the gateway peer, which reports back to the uvicorn router."""
    cb = twilio_callbacks
    peer = GatewayPeer().start()
    try:
        template = twilio_preset(
            peer.twilio_url, ACCOUNT_SID, AUTH_TOKEN, status_callback=cb.twilio_url
        )
        provider = HttpGatewayProvider(template)
        sms = OutboundSms("sms_E2E", "+15005550006", "+34600123456", "hi", "gsm7", ("hi",))
        (sid,) = provider.submit(sms).message_ids
        provider.close()
        deadline = time.monotonic() + 10
        while len(peer.callbacks_sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        peer.stop()
    assert peer.callbacks_sent == [("sent", 200), ("delivered", 200)]
    assert [(r.message_id, r.state) for r in cb.sink.reports] == [
        (sid, "enroute"), (sid, "delivered"),
    ]  # fmt: skip
    assert not cb.sink.reports[0].final


def test_twilio_statuses_map_to_report_states() -> None:
    url = "https://sealpost.example.com/sms/callbacks/twilio"
    expected = {"queued": "accepted", "sending": "accepted", "sent": "enroute",
                "delivered": "delivered", "undelivered": "undelivered",
                "failed": "rejected"}  # fmt: skip
    for status, state in expected.items():
        form = twilio_form(status)
        body = urllib.parse.urlencode(form).encode()
        signature = documented_twilio_signature("tok", url, form)
        report = parse_twilio_report(body, url, signature, "tok", received_at=NOW)
        assert report.state == state
        assert report.at == NOW
        assert report.raw == body


def test_the_carriers_done_date_is_kept_when_twilio_passes_it() -> None:
    url = "https://sealpost.example.com/sms/callbacks/twilio"
    form = {**twilio_form("delivered"), "RawDlrDoneDate": "2612070129"}
    body = urllib.parse.urlencode(form).encode()
    signature = documented_twilio_signature("tok", url, form)
    report = parse_twilio_report(body, url, signature, "tok", received_at=NOW)
    assert report.at == datetime(2026, 12, 7, 1, 29, tzinfo=UTC)


def test_a_twilio_url_is_checked_with_and_without_its_default_port() -> None:
    form = twilio_form("delivered")
    body = urllib.parse.urlencode(form).encode()
    signed_with_port = documented_twilio_signature("tok", "https://sp.example.com:443/cb", form)
    report = parse_twilio_report(
        body, "https://sp.example.com/cb", signed_with_port, "tok", received_at=NOW
    )
    assert report.state == "delivered"
    with pytest.raises(Unauthorized):
        parse_twilio_report(body, "https://sp.example.com:8443/cb", signed_with_port, "tok",
                            received_at=NOW)  # fmt: skip


def test_without_a_configured_secret_every_callback_is_refused() -> None:
    form = twilio_form("delivered")
    body = urllib.parse.urlencode(form).encode()
    signature = documented_twilio_signature("", "https://x/cb", form)
    with pytest.raises(Unauthorized):
        parse_twilio_report(body, "https://x/cb", signature, "", received_at=NOW)
    with pytest.raises(Unauthorized):
        parse_json_report(b"{}", {}, None, received_at=NOW)


# -- generic JSON (Standard Webhooks) ----------------------------------------------------------


def post_json(cb: Callbacks, body: str, headers: dict[str, str]) -> httpx.Response:
    headers = {**headers, "Content-Type": "application/json"}
    return httpx.post(cb.json_url, content=body.encode(), headers=headers, timeout=10)


def test_a_signed_json_report_reaches_the_sink(json_callbacks: Callbacks) -> None:
    cb = json_callbacks
    body = ('{"message_id":"gw-42","status":"delivered","error_code":"000",'
            '"done_at":"2026-12-07T01:29:00+00:00"}')  # fmt: skip
    response = post_json(cb, body, webhook_headers("msg_1", body, [cb.whsec]))
    assert response.status_code == 200
    (report,) = cb.sink.reports
    assert (report.message_id, report.state, report.status) == ("gw-42", "delivered", "000")
    assert report.at == datetime(2026, 12, 7, 1, 29, tzinfo=UTC)
    assert report.raw == body.encode()


@pytest.mark.parametrize("forgery", ["other secret", "stale", "tampered body", "no headers"])
def test_a_forged_or_stale_json_report_is_refused_and_nothing_recorded(
    json_callbacks: Callbacks, forgery: str
) -> None:
    cb = json_callbacks
    body = '{"message_id":"gw-42","status":"undelivered"}'
    headers = webhook_headers("msg_1", body, [cb.whsec])
    if forgery == "other secret":
        headers = webhook_headers("msg_1", body, [new_secret()])
    elif forgery == "stale":
        old = datetime.now(UTC) - timedelta(minutes=10)
        headers = webhook_headers("msg_1", body, [cb.whsec], moment=old)
    elif forgery == "tampered body":
        body = body.replace("undelivered", "delivered")
    else:
        headers = {}
    response = post_json(cb, body, headers)
    assert response.status_code == 401
    assert cb.sink.reports == []


def test_a_json_report_it_cannot_read_names_the_field(json_callbacks: Callbacks) -> None:
    cb = json_callbacks
    body = '{"message_id":"gw-42","status":"beamed"}'
    response = post_json(cb, body, webhook_headers("msg_2", body, [cb.whsec]))
    assert response.status_code == 422
    assert "status" in response.json()["detail"]
    assert cb.sink.reports == []


def test_an_oversized_report_is_refused(json_callbacks: Callbacks) -> None:
    body = '{"message_id":"' + "x" * 70_000 + '","status":"delivered"}'
    cb = json_callbacks
    response = post_json(cb, body, webhook_headers("msg_3", body, [cb.whsec]))
    assert response.status_code == 413
    assert cb.sink.reports == []


def test_json_report_fields_are_checked() -> None:
    secret = new_secret()
    for body, field in [
        ('{"status":"delivered"}', "message_id"),
        ('{"message_id":"a","status":"delivered","done_at":"yesterday"}', "done_at"),
        ('{"message_id":"a","status":"delivered","done_at":"2026-12-07T01:00:00"}', "done_at"),
        ("[1]", "object"),
    ]:
        with pytest.raises(InvalidInput, match=field):
            parse_json_report(body.encode(), webhook_headers("m", body, [secret]), secret,
                              received_at=NOW)  # fmt: skip
