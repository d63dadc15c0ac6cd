"""The HTTP gateway adapter against a real gateway on 127.0.0.1 (tests/sms/http_peer.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from sealpost.config import Settings
from sealpost.sms.http_gateway import (
    HttpGatewayProvider,
    PartialSubmission,
    RequestTemplate,
    TemplateError,
    json_preset,
    read_pointer,
    retry_after,
    template_from_settings,
    twilio_preset,
)
from sealpost.sms.providers import OutboundSms, PermanentFailure, TemporaryFailure
from tests.sms.http_peer import ACCOUNT_SID, AUTH_TOKEN, GatewayPeer

OPEN: list[HttpGatewayProvider] = []


@pytest.fixture(autouse=True)
def _close_providers() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def opened(provider: HttpGatewayProvider) -> HttpGatewayProvider:
    OPEN.append(provider)
    return provider


@pytest.fixture
def peer() -> Iterator[GatewayPeer]:
    gateway = GatewayPeer(hang_seconds=2.0).start()
    yield gateway
    gateway.stop()


def sms(to: str, segments: tuple[str, ...] = ("Your code is 123456",)) -> OutboundSms:
    return OutboundSms(
        sms_id="sms_01TEST", sender="+15005550006", to=to, text="".join(segments),
        encoding="gsm7", segments=segments,
    )  # fmt: skip


def twilio(
    peer: GatewayPeer, *, timeout: float = 5.0, token: str = AUTH_TOKEN
) -> HttpGatewayProvider:
    template = twilio_preset(
        peer.twilio_url, ACCOUNT_SID, token, status_callback="https://sms.example.com/cb"
    )
    return opened(HttpGatewayProvider(template, timeout=timeout))


def per_segment(peer: GatewayPeer) -> HttpGatewayProvider:
    template = RequestTemplate(
        url=peer.json_url,
        headers={"Idempotency-Key": "{sms_id}-{segment}"},
        body="json",
        json_body={"to": "{to}", "text": "{text}", "reference": "{sms_id}",
                   "segment": "{segment}", "of": "{segments}"},
        per="segment",
        id_path="/id",
    )  # fmt: skip
    return opened(HttpGatewayProvider(template, segment_retry_max_seconds=0.01))


def test_the_twilio_preset_posts_the_form_and_keeps_the_sid(peer: GatewayPeer) -> None:
    provider = twilio(peer)
    submitted = provider.submit(sms("+34600123456"))

    (request,) = peer.received
    assert request.form["To"] == "+34600123456"
    assert request.form["From"] == "+15005550006"
    assert request.form["Body"] == "Your code is 123456"
    assert request.form["StatusCallback"] == "https://sms.example.com/cb"
    assert submitted.provider == "http"
    assert submitted.details["http_status"] == "201"
    (sid,) = submitted.message_ids
    assert sid.startswith("SM") and len(sid) == 34


def test_a_throttled_gateway_is_a_temporary_failure_with_its_retry_after(
    peer: GatewayPeer,
) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        twilio(peer).submit(sms("+34600120429"))
    assert caught.value.status == "429"
    assert caught.value.retry_after == 7.0


def test_a_server_error_is_temporary(peer: GatewayPeer) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        twilio(peer).submit(sms("+34600120500"))
    assert caught.value.status == "500"
    assert caught.value.retry_after is None


def test_a_gateway_that_does_not_answer_in_time_is_temporary(peer: GatewayPeer) -> None:
    started = time.monotonic()
    with pytest.raises(TemporaryFailure) as caught:
        twilio(peer, timeout=0.3).submit(sms("+34600120408"))
    assert caught.value.status == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_temporary() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        template = twilio_preset(f"http://127.0.0.1:{port}/Messages.json", ACCOUNT_SID, "x")
        with pytest.raises(TemporaryFailure) as caught:
            opened(HttpGatewayProvider(template, timeout=2)).submit(sms("+34600123456"))
    assert caught.value.status == "unreachable"


def test_an_invalid_number_is_a_permanent_refusal_with_status_and_body(
    peer: GatewayPeer,
) -> None:
    with pytest.raises(PermanentFailure) as caught:
        twilio(peer).submit(sms("+34600120400"))
    assert caught.value.status == "400"
    assert "HTTP 400" in caught.value.reason
    assert "is not a valid phone number" in caught.value.reason
    assert "21211" in caught.value.reason


def test_wrong_gateway_credentials_make_messages_wait_not_fail(peer: GatewayPeer) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        twilio(peer, token="wrong").submit(sms("+34600123456"))
    assert caught.value.status == "401"


def test_per_segment_one_request_and_one_operator_id_per_segment(peer: GatewayPeer) -> None:
    segments = ("first part, ", "second part, ", "third")
    submitted = per_segment(peer).submit(sms("+34600123456", segments))

    assert [r.json["text"] for r in peer.received] == list(segments)
    assert [r.json["segment"] for r in peer.received] == ["0", "1", "2"]
    assert {r.json["of"] for r in peer.received} == {"3"}
    assert [r.headers["Idempotency-Key"] for r in peer.received] == [
        "sms_01TEST-0", "sms_01TEST-1", "sms_01TEST-2",
    ]  # fmt: skip
    assert len(submitted.message_ids) == 3
    assert len(set(submitted.message_ids)) == 3
    assert all(i.startswith("gw-") for i in submitted.message_ids)


def test_a_segment_refused_after_the_first_was_taken_is_final_and_keeps_the_taken_id(
    peer: GatewayPeer,
) -> None:
    with pytest.raises(PartialSubmission) as caught:
        per_segment(peer).submit(sms("+34600120461", ("one ", "two ", "three")))
    assert isinstance(caught.value, PermanentFailure)
    assert caught.value.status == "400"
    assert len(caught.value.message_ids) == 1
    assert len(peer.received) == 2  # the third segment was not sent


def test_a_segment_throttled_after_the_first_was_taken_is_retried_in_place(
    peer: GatewayPeer,
) -> None:
    submitted = per_segment(peer).submit(sms("+34600120462", ("one ", "two")))
    assert len(submitted.message_ids) == 2
    assert [r.json["segment"] for r in peer.received] == ["0", "1", "1", "1"]


def test_a_throttled_first_segment_sends_nothing_more(peer: GatewayPeer) -> None:
    with pytest.raises(TemporaryFailure):
        per_segment(peer).submit(sms("+34600120429", ("one ", "two")))
    assert len(peer.received) == 1


def test_texts_stay_inside_their_json_string(peer: GatewayPeer) -> None:
    hostile = ('", "to": "+10000000000", "x": "{to} {{sms_id}}',)
    per_segment(peer).submit(sms("+34600123456", hostile))
    (request,) = peer.received
    assert request.json["to"] == "+34600123456"
    assert request.json["text"] == hostile[0]  # rendered once: its braces are left alone
    assert "x" not in request.json


@pytest.mark.parametrize(
    "template",
    ["{to.__class__}", "{0}", "{text!r}", "{sms_id", "hello }", "{unknown}"],
)
def test_templates_name_only_the_known_fields(template: str) -> None:
    with pytest.raises(TemplateError):
        RequestTemplate(url="http://127.0.0.1/x", json_body={"t": template})
    with pytest.raises(TemplateError):
        RequestTemplate(url="http://127.0.0.1/x", headers={"X-T": template})


@pytest.mark.parametrize("sender", ["evil\r\nX-Injected: 1", "Ca\u00f1ada"])
def test_a_header_value_that_cannot_be_one_is_a_configuration_fault(
    peer: GatewayPeer, sender: str
) -> None:
    """Nothing is sent, and the SMS waits (temporary) rather than being recorded as refused
    by the operator: the gateway's configuration is at fault, not the message."""
    template = RequestTemplate(url=peer.json_url, headers={"X-From": "{from}"})
    bad = OutboundSms("id", sender, "+34600123456", "t", "gsm7", ("t",))
    with pytest.raises(TemporaryFailure) as fault:
        opened(HttpGatewayProvider(template)).submit(bad)
    assert fault.value.status == "configuration" and "SMS_HTTP_HEADERS" in fault.value.reason
    assert peer.received == []


@pytest.mark.parametrize("value", ["Su c\u00f3digo", "{text}", "ref {sms_id}: {text}"])
def test_a_header_template_is_ascii_and_never_carries_the_text(value: str) -> None:
    with pytest.raises(TemplateError, match="ASCII"):
        RequestTemplate(url="http://127.0.0.1/x", headers={"X-T": value})


def test_url_fields_are_percent_encoded() -> None:
    template = RequestTemplate(url="http://127.0.0.1/send?to={to}&text={text}", body="none")
    request = template.build(sms("+34600123456", ("a&b=c d",)), None)
    assert request.url.params["to"] == "+34600123456"
    assert request.url.params["text"] == "a&b=c d"


def test_ids_are_read_by_json_pointer_with_a_wildcard_over_arrays() -> None:
    vonage = {"message-count": "2", "messages": [{"message-id": "a1"}, {"message-id": "a2"}]}
    assert read_pointer(vonage, "/messages/*/message-id") == ["a1", "a2"]
    assert read_pointer({"a/b": {"~c": 7}}, "/a~1b/~0c") == ["7"]
    assert read_pointer({"id": None}, "/id") == []
    assert read_pointer({"sid": "SM1"}, "/missing") == []


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    response = httpx.Response(503, headers={"Retry-After": later})
    assert retry_after(response, now) == 90.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"}), now) is None


def test_settings_make_the_twilio_preset_with_its_status_callback() -> None:
    settings = Settings(
        sms_http_url="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
        sms_http_preset="twilio", sms_http_username="AC1", sms_http_password="tok",
        sms_http_callback_url="https://sealpost.example.com/",
    )  # fmt: skip
    template = template_from_settings(settings)
    request = template.build(sms("+34600123456"), None)
    form = httpx.QueryParams(request.content.decode())
    assert form["To"] == "+34600123456"
    assert form["StatusCallback"] == "https://sealpost.example.com/sms/callbacks/twilio"
    assert request.headers["Authorization"] == httpx.BasicAuth("AC1", "tok")._auth_header


def test_settings_override_the_json_preset() -> None:
    settings = Settings(
        sms_http_url="http://127.0.0.1/send", sms_http_per="segment",
        sms_http_body_template='{"dest": "{to_digits}", "msg": "{text}"}',
        sms_http_id_path="/messages/*/message-id", sms_http_token="t0k",
    )  # fmt: skip
    template = template_from_settings(settings)
    assert template.per == "segment"
    request = template.build(sms("+34600123456", ("a", "b")), 1)
    assert request.read() == b'{"dest":"34600123456","msg":"b"}'
    assert request.headers["Authorization"] == "Bearer t0k"
    with pytest.raises(TemplateError):
        template_from_settings(settings.model_copy(update={"sms_http_headers": {"X": "{nope}"}}))


def test_the_documented_get_gateway_example() -> None:
    """docs/sms.md's example: one GET per segment, the id in a form answer."""
    settings = Settings(
        sms_http_url="https://gw.example.net/send?dst={to_digits}&msg={text}&ref={sms_id}-{segment}",
        sms_http_method="GET", sms_http_body_template="null", sms_http_per="segment",
        sms_http_response="form", sms_http_id_path="id",
    )  # fmt: skip
    template = template_from_settings(settings)
    request = template.build(sms("+34600123456", ("hola ", "qué tal")), 1)
    assert request.method == "GET"
    assert request.read() == b""
    assert dict(request.url.params) == {
        "dst": "34600123456",
        "msg": "qué tal",
        "ref": "sms_01TEST-1",
    }
    answer = httpx.Response(200, text="status=0&id=gw-77")
    assert template.message_ids(answer) == ["gw-77"]


def test_the_json_preset_posts_json_with_bearer_and_idempotency_key(peer: GatewayPeer) -> None:
    provider = opened(HttpGatewayProvider(json_preset(peer.json_url, token="t0k")))
    submitted = provider.submit(sms("+34600123456", ("¿qué tal? ", "ñ")))
    (request,) = peer.received
    assert request.json == {
        "to": "+34600123456", "from": "+15005550006", "text": "¿qué tal? ñ",
        "reference": "sms_01TEST",
    }  # fmt: skip
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers["Idempotency-Key"] == "sms_01TEST"
    (operator_id,) = submitted.message_ids
    assert operator_id.startswith("gw-")


def test_a_segment_still_throttled_after_the_first_was_taken_waits_and_resumes_alone(
    peer: GatewayPeer,
) -> None:
    """Segment 2 stays throttled past the in-place retries: a temporary failure naming the
    taken segment 1; the next attempt (given that) sends segment 2 only, and keeps 1's id."""
    from dataclasses import replace

    gateway = per_segment(peer)
    gateway.segment_retries = 1
    message = sms("+34600120462", ("one ", "two"))
    with pytest.raises(TemporaryFailure) as caught:
        gateway.submit(message)
    assert list(caught.value.taken) == [0]
    first_id = caught.value.taken[0]
    assert [r.json["segment"] for r in peer.received] == ["0", "1", "1"]
    submitted = gateway.submit(replace(message, taken=caught.value.taken))
    assert [r.json["segment"] for r in peer.received] == ["0", "1", "1", "1"]  # 0 not again
    assert submitted.message_ids[0] == first_id and len(set(submitted.message_ids)) == 2
