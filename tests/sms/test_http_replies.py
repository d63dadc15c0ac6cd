"""Answers over the HTTP gateway: Twilio's incoming-message webhook, signed as Twilio
documents it, posted to a whole Sealpost served by uvicorn (the ``served`` fixture)."""

from __future__ import annotations

import json
import time
import urllib.parse
from datetime import UTC, datetime

import httpx
import pytest

from sealpost.errors import InvalidInput, Unauthorized
from sealpost.events.webhooks.headers import new_secret, webhook_headers
from sealpost.sms.callbacks import parse_json_inbound
from tests.sms.http_peer import AUTH_TOKEN, documented_twilio_signature
from tests.sms.test_http_end_to_end import TO, Served, served

__all__ = ["served"]


def _post_inbound(served: Served, form: dict[str, str], token: str = AUTH_TOKEN) -> httpx.Response:
    url = f"{served.base}/sms/callbacks/twilio/inbound"
    return httpx.post(
        url,
        content=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": documented_twilio_signature(token, url, form),
        },
        timeout=10,
    )


def test_a_signed_twilio_answer_is_a_reply_and_a_forged_one_records_nothing(
    served: Served,
) -> None:
    answer = httpx.post(
        f"{served.base}/v1/sms", json={"to": TO, "text": "Su recibo vence mañana."},
        headers=served.auth, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    sms_id = answer.json()["id"]
    served.wait(sms_id, "delivered")
    form = {"From": TO, "To": "+15005550006", "Body": "BAJA", "MessageSid": "SM" + "1" * 32}

    forged = _post_inbound(served, form, token="not-the-token")
    assert forged.status_code == 401
    taken = _post_inbound(served, form)
    assert taken.status_code == 200, taken.text
    assert "<Response/>" in taken.text  # no automatic answer from Twilio

    deadline = time.monotonic() + 10
    while True:
        replies = httpx.get(
            f"{served.base}/v1/sms/{sms_id}/replies", headers=served.auth, timeout=10
        ).json()["items"]
        if replies or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (reply,) = replies
    assert reply["opt_out"] is True
    assert reply["provider"] == "http"
    opt_outs = httpx.get(f"{served.base}/v1/sms/opt-outs", headers=served.auth, timeout=10)
    assert [o["phone"] for o in opt_outs.json()["items"]] == [TO]


def test_a_json_answer_must_be_signed_and_complete() -> None:
    secret = new_secret()
    body = json.dumps({"from": "+34612345678", "to": "Sealpost", "text": "BAJA"})
    now = datetime.now(UTC)
    found = parse_json_inbound(
        body.encode(), webhook_headers("m1", body, [secret]), secret, received_at=now
    )
    assert (found.phone, found.destination, found.text) == ("+34612345678", "Sealpost", "BAJA")
    with pytest.raises(Unauthorized):
        parse_json_inbound(
            body.encode(), webhook_headers("m1", body, [new_secret()]), secret, received_at=now
        )
    partial = json.dumps({"from": "+34612345678", "text": "hi"})
    with pytest.raises(InvalidInput):
        parse_json_inbound(
            partial.encode(), webhook_headers("m2", partial, [secret]), secret, received_at=now
        )
