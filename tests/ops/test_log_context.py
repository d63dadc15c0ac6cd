"""What a webhook send's log lines say about its event: the communication it is about."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sealpost.events.webhooks.deliveries import ClaimedWebhookDelivery
from sealpost.events.webhooks.headers import SigningSecrets
from sealpost.events.webhooks.sender import log_context


def _delivery(payload: str) -> ClaimedWebhookDelivery:
    now = datetime.now(UTC)
    return ClaimedWebhookDelivery(
        id="d1",
        endpoint_id="e1",
        tenant_id="t1",
        url="https://crm.example/hook",
        event_id="ev1",
        event_type="communication.delivered",
        payload=payload,
        attempts=0,
        deadline_at=now,
        created_at=now,
        secrets=SigningSecrets("whsec_x", None, None),
    )


def test_an_event_about_a_communication_names_it() -> None:
    for collection in ("communications", "sms"):
        payload = json.dumps({"id": "ev1", "subject": f"{collection}/c-42"})
        assert log_context(_delivery(payload)) == {
            "tenant_id": "t1",
            "event_id": "ev1",
            "subject": f"{collection}/c-42",
            "communication_id": "c-42",
        }


def test_other_subjects_and_odd_payloads_name_no_communication() -> None:
    signatures = log_context(_delivery(json.dumps({"subject": "signatures/p-1"})))
    assert signatures == {"tenant_id": "t1", "event_id": "ev1", "subject": "signatures/p-1"}
    for odd in ("not json", "[1, 2]", json.dumps({"subject": 7}), json.dumps({})):
        assert log_context(_delivery(odd)) == {"tenant_id": "t1", "event_id": "ev1"}
