"""Helpers of the pickup tests: a pickup sent over the API, the notice and codes the real
recipient server received, and a recipient walking through the page's JSON API."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

from tests.signatures.flow import mails_to, wait_mail
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv

__all__ = ["mails_to", "wait_mail"]

SECRET_TEXT = "The decision on claim 4711: your refund of 120 EUR is approved."
ATTACHMENT = b"%PDF-1.4 the decision letter\n"


def pickup_request(local: str, *, delivery: str = "pickup", **pickup: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "claims@acme.test",
        "to": [f"{local}@{RECIPIENT_DOMAIN}"],
        "subject": "Claim 4711",
        "text": SECRET_TEXT,
        "attachments": [
            {
                "filename": "decision.pdf",
                "content_type": "application/pdf",
                "content": base64.b64encode(ATTACHMENT).decode(),
            }
        ],
        "delivery": delivery,
    }
    if pickup:
        body["pickup"] = pickup
    return body


def send_pickup(client: TestClient, key: dict[str, str], local: str, **pickup: Any) -> str:
    response = client.post("/v1/communications", json=pickup_request(local, **pickup), headers=key)
    assert response.status_code == 201, response.text
    cid: str = response.json()["communications"][0]["id"]
    return cid


def link_in(mail: str) -> str:
    found = re.search(r"(https?://\S+/pickup/[A-Za-z0-9_-]+)", mail)
    assert found, mail
    return found.group(1)


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def code_in(mail: str) -> str:
    found = re.search(r"Su código: (\d{6})", mail)
    assert found, mail
    return found.group(1)


def events_of(env: MailEnv, cid: str) -> list[str]:
    return [e.event for e in env.sp.communications.timeline(env.tenant_id, cid)]


def records_of(env: MailEnv, cid: str, event: str) -> list[dict[str, Any]]:
    return [
        e.record for e in env.sp.communications.timeline(env.tenant_id, cid) if e.event == event
    ]


def notify(env: MailEnv, now: datetime | None = None) -> None:
    """One round of the pickup worker (the tests drive it; the loop is off)."""
    env.sp.pickup.run_due(now)


@dataclass
class Recipient:
    """A recipient on the pickup page, through its JSON API (what pickup.js calls)."""

    client: TestClient
    session: str = ""

    def open(self, token: str, agent: str = "Mozilla/5.0 (Android 14) Mobile") -> dict[str, Any]:
        response = self.client.post(
            "/pickup/api/open", json={"link": token}, headers={"User-Agent": agent}
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        self.session = data["session_token"]
        return data

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(
            method,
            f"/pickup/api{path}",
            json=body,
            headers={"X-Pickup-Session": self.session, "User-Agent": "Mozilla/5.0 Mobile"},
        )
