"""Rate limits of the signing page and of one-time codes, per client address: the address
over its rate gets 429 with ``Retry-After`` (and the page shows the message); the signer's
own counters are untouched, another address goes on, and the limit recovers once the wait
is over (the limiters' clocks are moved, nothing sleeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sealpost.ratelimit import Rate
from tests.signatures.flow import (
    PageSession,
    code_in,
    link_path,
    open_page,
    process_request,
    signer,
    wait_mail,
)
from tests.support.mail import MailEnv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


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
        "signing_worker_enabled": False,
        "rate_limit_signing_page_per_ip": Rate(20, 60.0),  # one more every 3 s
        "rate_limit_codes_per_ip": Rate(3, 3600.0),  # one more every 20 min
    }


def _as(client: TestClient, ip: str) -> TestClient:
    """The same app, seen from another client address."""
    return TestClient(client.app, client=(ip, 50000))


def _invited(env: MailEnv, client: TestClient, key: dict[str, str]) -> str:
    created = client.post(
        "/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key
    )
    assert created.status_code == 201, created.text
    return link_path(wait_mail(env, "jane", "asks you to sign"))


def _is_rate_limited(response: object, retry_after: int) -> None:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == str(retry_after)  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == "rate_limited" and body["retry_after"] == retry_after
    assert body["message"]  # what the page shows


def test_an_address_hammering_the_signing_page_waits_and_the_signer_does_not(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    clock = Clock()
    limiter = client.app.state.rate_limits.signing_page_per_ip  # type: ignore[attr-defined]
    limiter.clock = clock
    link = _invited(mail_env, client, key)
    signer_page = open_page(_as(client, "198.51.100.1"), link)  # GET + open: 2 of 20

    bot = _as(client, "203.0.113.66")
    answers = [bot.get(f"/sign/guess{n}").status_code for n in range(20)]
    assert answers == [410] * 20  # unknown links, each one counted
    _is_rate_limited(bot.get(link), 3)
    _is_rate_limited(bot.post("/sign/api/open", json={"link": "guess"}), 3)
    assert bot.get("/static/access/api.js").status_code == 200  # static files are not counted

    assert signer_page.call("GET", "/state").status_code == 200  # another address
    clock.now += 3
    assert bot.get("/sign/guess20").status_code == 410
    _is_rate_limited(bot.get("/sign/guess21"), 3)


def test_codes_are_limited_per_address_without_costing_the_signer_an_attempt(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    clock = Clock()
    assert mail_env.sp.access.codes_per_ip is not None
    mail_env.sp.access.codes_per_ip.clock = clock
    page = open_page(_as(client, "198.51.100.1"), _invited(mail_env, client, key))
    assert page.call("POST", "/otp").status_code == 200  # 1 of 3 for this address
    code = code_in(wait_mail(mail_env, "jane", "Your signing code"))
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3):  # 2 and 3 of 3
        answer = page.call("POST", "/otp/verify", json={"code": wrong})
        assert answer.status_code == 422 and answer.json()["attempts_left"] == left
    _is_rate_limited(page.call("POST", "/otp/verify", json={"code": code}), 1200)
    _is_rate_limited(page.call("POST", "/otp"), 1200)
    assert page.call("GET", "/state").json()["otp"]["attempts_left"] == 3  # not counted

    elsewhere = PageSession(_as(client, "198.51.100.2"), page.config)  # the signer's phone
    done = elsewhere.call("POST", "/otp/verify", json={"code": code})
    assert done.status_code == 200, done.text

    clock.now += 1200
    second = open_page(_as(client, "198.51.100.1"), link_path(_renewed(mail_env, client, key)))
    assert second.call("POST", "/otp").status_code == 200


def _renewed(env: MailEnv, client: TestClient, key: dict[str, str]) -> str:
    """The invitation of a second process to the same address (a fresh holder)."""
    created = client.post(
        "/v1/signatures", json=process_request(signer("Jane", "jane")), headers=key
    )
    assert created.status_code == 201, created.text
    return wait_mail(env, "jane", "asks you to sign", count=2)
