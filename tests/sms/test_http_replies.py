"""Answers over the HTTP gateway: Twilio's incoming-message webhook, signed as Twilio
documents it, posted to a whole Sealpost served by uvicorn (the ``served`` fixture)."""

from __future__ import annotations

import time
import urllib.parse

import httpx

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
