"""Rate limits of the API: a tenant over its rate, or an address over its own, gets 429 with
``Retry-After`` and a problem saying so; another tenant or address goes on; the limit
recovers once the wait is over (the limiters' clock is moved, nothing sleeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.api.limits import RateLimits
from sealpost.app import Sealpost
from sealpost.config import Settings
from sealpost.ratelimit import Rate

PROBLEM = "application/problem+json"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database_url(tmp_path: Path) -> str:  # the limits live in memory, not in the database
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_api_per_tenant": Rate(3, 60.0),  # one more every 20 s
            "rate_limit_api_per_ip": Rate(5, 60.0),  # one more every 12 s
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(sealpost: Sealpost, clock: Clock) -> FastAPI:
    app = create_app(sealpost, start_background=False)
    rates: RateLimits = app.state.rate_limits
    for limiter in (rates.per_tenant, rates.per_ip, rates.signing_page_per_ip):
        assert limiter is not None
        limiter.clock = clock
    return app


def _client(app: FastAPI, ip: str) -> TestClient:
    return TestClient(app, client=(ip, 50000))


@pytest.fixture
def keys(sealpost: Sealpost) -> tuple[dict[str, str], dict[str, str]]:
    a = sealpost.tenants.create("Acme").id
    b = sealpost.tenants.create("Globex").id
    return (
        {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(a).secret}"},
        {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(b).secret}"},
    )


def _is_rate_limited(response: object, retry_after: int) -> None:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == str(retry_after)  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["type"] == "urn:sealpost:problem:rate_limited"
    assert body["retry_after"] == retry_after


def test_a_tenant_over_its_rate_waits_and_another_tenant_does_not(
    app: FastAPI, clock: Clock, keys: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, globex = keys
    with _client(app, "10.0.0.1") as first, _client(app, "10.0.0.2") as second:
        # a POST is admitted (key and rate) before its body is read, and counted once
        replayed = first.post("/v1/events/replay", json={"event_ids": []}, headers=acme)
        assert replayed.status_code != 429, replayed.text
        assert first.get("/v1/communications", headers=acme).status_code == 200
        assert first.get("/v1/webhooks", headers=acme).status_code == 200
        refused = second.get("/v1/communications", headers=acme)  # the tenant, from anywhere
        _is_rate_limited(refused, 20)
        _is_rate_limited(second.post("/v1/events/replay", json={}, headers=acme), 20)
        assert second.get("/v1/communications", headers=globex).status_code == 200
        clock.now += 19
        _is_rate_limited(first.get("/v1/communications", headers=acme), 1)
        clock.now += 1
        assert first.get("/v1/communications", headers=acme).status_code == 200


def test_an_address_over_its_rate_waits_keyed_or_not_and_another_does_not(
    app: FastAPI, clock: Clock, keys: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, globex = keys
    with _client(app, "192.0.2.7") as flooding, _client(app, "192.0.2.8") as other:
        answers = [flooding.get("/v1/communications").status_code for _ in range(5)]
        assert answers == [401] * 5
        _is_rate_limited(flooding.get("/v1/communications", headers=globex), 12)
        _is_rate_limited(flooding.post("/tsa", content=b"0"), 12)
        assert flooding.get("/healthz").status_code == 200  # probes are never limited
        assert other.get("/v1/communications", headers=acme).status_code == 200
        clock.now += 12
        assert flooding.get("/v1/communications", headers=globex).status_code == 200
        _is_rate_limited(flooding.get("/v1/communications", headers=globex), 12)
