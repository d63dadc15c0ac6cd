"""Certified SMS over the HTTP gateway, end to end: a whole Sealpost (SMS_PROVIDER=http, the
Twilio preset) served by a real uvicorn on 127.0.0.1, the gateway peer (tests/sms/http_peer.py)
taking the message and posting its signed delivery reports back to the app's own
``/sms/callbacks/twilio`` route — no sink of the test's in between."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.sms.callbacks import PROVIDER
from sealpost.sms.model import Sms
from tests.sms.http_peer import ACCOUNT_SID, AUTH_TOKEN, GatewayPeer, documented_twilio_signature
from tests.sms.test_http_callbacks import free_port

TO = "+34612345670"


@dataclass
class Served:
    sp: Sealpost
    base: str
    peer: GatewayPeer
    auth: dict[str, str]
    tenant_id: str

    def wait(self, sms_id: str, status: str, timeout: float = 20) -> Sms:
        deadline = time.monotonic() + timeout
        while True:
            found = self.sp.sms_repository.get(sms_id)
            if found is not None and found.status == status:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {status}; last: {found}")
            time.sleep(0.05)

    def events(self, sms_id: str) -> list[str]:
        return [e.event for e in self.sp.sms_repository.timeline(self.tenant_id, sms_id)]


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    peer = GatewayPeer().start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sp = build(
        settings.model_copy(
            update={
                "sms_provider": "http",
                "sms_http_preset": "twilio",
                "sms_http_url": peer.twilio_url,
                "sms_http_username": ACCOUNT_SID,
                "sms_http_password": SecretStr(AUTH_TOKEN),
                "sms_http_callback_url": base,
                "sms_retry_initial_seconds": 0.2,
                "sms_retry_max_seconds": 1.0,
                "smtp_enabled": False,
                "delivery_enabled": False,
            }
        )
    )
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    secret = sp.tenants.issue_api_key(tenant.id, "crm").secret
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(sp, start_background=False), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        sp.start_background()
        sp.start_sms()
        yield Served(sp, base, peer, {"Authorization": f"Bearer {secret}"}, tenant.id)
    finally:
        server.should_exit = True
        thread.join(10)
        sp.stop_background()
        sp.engine.dispose()
        peer.stop()


def test_an_sms_over_the_http_gateway_is_delivered_by_its_signed_report(served: Served) -> None:
    answer = httpx.post(
        f"{served.base}/v1/sms", json={"to": TO, "text": "Su recibo vence mañana."},
        headers=served.auth, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    sms_id = answer.json()["id"]
    sms = served.wait(sms_id, "delivered")
    (taken,) = [r for r in served.peer.received if r.form.get("To") == TO]
    assert taken.form["StatusCallback"] == f"{served.base}/sms/callbacks/twilio"
    deadline = time.monotonic() + 10  # the peer notes the answer after our route gave it
    while ("delivered", 200) not in served.peer.callbacks_sent:
        assert time.monotonic() < deadline, served.peer.callbacks_sent
        time.sleep(0.02)
    assert sms.status == "delivered"
    events = served.events(sms_id)
    assert events[0] == "SubmissionAcceptance" and events.count("DeliveryReported") == 1
    detail = httpx.get(f"{served.base}/v1/sms/{sms_id}", headers=served.auth, timeout=10).json()
    assert [s["state"] for s in detail["segments"]] == ["delivered"]


def test_a_forged_report_is_refused_and_changes_nothing(served: Served) -> None:
    """A report signed with another token (or not signed) for a delivered SMS's operator id:
    refused, no report stored, no evidence, the status stays what the operator said."""
    answer = httpx.post(
        f"{served.base}/v1/sms", json={"to": TO, "text": "hola"}, headers=served.auth, timeout=10
    )
    sms_id = answer.json()["id"]
    served.wait(sms_id, "delivered")
    events = served.events(sms_id)
    detail = httpx.get(f"{served.base}/v1/sms/{sms_id}", headers=served.auth, timeout=10).json()
    sid = detail["segments"][0]["operator_message_id"]
    stored = len(served.sp.sms_repository.reports(PROVIDER, sid))
    assert stored >= 1  # the genuine ones
    url = f"{served.base}/sms/callbacks/twilio"
    form = {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "ErrorCode": "30005",
        "From": "+15005550006", "MessageSid": sid, "MessageStatus": "undelivered",
        "SmsSid": sid, "SmsStatus": "undelivered", "To": TO,
    }  # fmt: skip
    for headers in (
        {"X-Twilio-Signature": documented_twilio_signature("not-the-token", url, form)},
        {},
    ):
        refused = httpx.post(url, data=form, headers=headers, timeout=10)
        assert refused.status_code in (401, 403), refused.text
    time.sleep(0.3)  # had anything been taken, the sink would have applied it by now
    assert served.sp.sms_repository.get(sms_id).status == "delivered"  # type: ignore[union-attr]
    assert served.events(sms_id) == events
    assert len(served.sp.sms_repository.reports(PROVIDER, sid)) == stored
