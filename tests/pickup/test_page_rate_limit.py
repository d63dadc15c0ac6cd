"""The pickup page's own rate bucket per client address (``/pickup/...``, like ``/sign/``):
a client hammering it gets 429 with ``Retry-After`` while a recipient at another address
picks the message up, the API's per-IP bucket is not spent by it, and the limit recovers once
the wait is over (the limiter's clock is moved, nothing sleeps).  Its bodies have their own
small limit (413 before the body is read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealpost.ratelimit import Rate
from tests.pickup.flow import (
    Recipient,
    code_in,
    link_in,
    notify,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import MailEnv

NOTICE = "certified message is waiting"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite"])  # the limits live in memory, not in the database
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {
        "certificates_enabled": False,
        "pickup_worker_enabled": False,
        "rate_limit_pickup_page_per_ip": Rate(10, 60.0),  # one more every 6 s
        "rate_limit_api_per_ip": Rate(100, 60.0),
    }


def _as(client: TestClient, ip: str) -> TestClient:
    return TestClient(client.app, client=(ip, 50000))


def test_a_client_hammering_the_pickup_page_waits_and_the_recipient_does_not(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    clock = Clock()
    rates = client.app.state.rate_limits  # type: ignore[attr-defined]
    rates.pickup_page_per_ip.clock = clock
    cid = send_pickup(client, key, "ula")
    notify(mail_env)
    token = token_of(link_in(wait_mail(mail_env, "ula", NOTICE)))

    bot = _as(client, "203.0.113.66")
    answers = [bot.get(f"/pickup/guess{n}").status_code for n in range(10)]
    assert answers == [404] * 10  # unknown links, each one counted
    refused = bot.get(f"/pickup/{token}")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "6"
    assert refused.json()["error"] == "rate_limited"
    assert bot.post("/pickup/api/open", json={"link": token}).status_code == 429
    assert bot.get("/static/access/api.js").status_code == 200  # static files are not counted
    assert bot.get("/v1/communications", headers=key).status_code == 200  # another bucket

    recipient = Recipient(_as(client, "198.51.100.7"))  # the recipient, elsewhere
    assert recipient.client.get(f"/pickup/{token}").status_code == 200
    recipient.open(token)
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(mail_env, "ula", "Su código"))
    assert recipient.call("POST", "/identify", {"answer": code}).status_code == 200
    assert recipient.call("POST", "/accept").status_code == 200
    assert recipient.call("GET", "/content").status_code == 200
    assert client.get(f"/v1/communications/{cid}", headers=key).json()["status"] == "accepted"

    clock.now += 6
    assert bot.get("/pickup/guess10").status_code == 404
    assert bot.get("/pickup/guess11").status_code == 429


def test_a_pickup_page_body_over_its_limit_is_refused_before_it_is_read(
    client: TestClient,
) -> None:
    huge = client.post(
        "/pickup/api/identify",
        content=b'{"answer": "' + b"1" * 20_000 + b'"}',
        headers={"Content-Type": "application/json", "X-Pickup-Session": "x"},
    )
    assert huge.status_code == 413
