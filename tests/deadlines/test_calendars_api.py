"""Tenant calendars and the deadline calculator over REST, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


def _key(sp: Sealpost, name: str) -> dict[str, str]:
    tenant = sp.tenants.create(name)
    return {"Authorization": f"Bearer {sp.tenants.issue_api_key(tenant.id, 'crm').secret}"}


LOCAL_DAYS = {
    "days": [
        {"date": "2026-12-21", "name": "Festa major", "kind": "holiday"},
        {"date": "2026-12-22", "name": "Office closed", "kind": "closure"},
    ]
}


def test_a_tenants_local_days_join_the_regions_calendar(
    sealpost: Sealpost, client: TestClient
) -> None:
    key, other = _key(sealpost, "town-hall"), _key(sealpost, "other")
    put = client.put("/v1/calendars/es-ct/days", json=LOCAL_DAYS, headers=key)
    assert put.status_code == 200, put.text
    assert put.json()["calendar"] == "ES-CT"
    assert [
        d["date"] for d in client.get("/v1/calendars/ES-CT/days", headers=key).json()["days"]
    ] == [
        "2026-12-21",
        "2026-12-22",
    ]
    merged = client.get("/v1/calendars/ES-CT?year=2026", headers=key).json()
    assert merged["name"] == "ES-CT + 2 local days"
    assert merged["time_zone"] == "Europe/Madrid"
    assert "local days sha256:" in merged["data_version"]
    days = {d["date"]: d for d in merged["non_business_days"]}
    for holiday in ("2026-04-06", "2026-06-24", "2026-09-11", "2026-12-08", "2026-12-25"):
        assert days[holiday]["kind"] == "holiday"
    assert days["2026-12-26"]["name"]  # Sant Esteve, on a Saturday
    assert days["2026-12-21"] == {
        "date": "2026-12-21",
        "name": "Festa major",
        "kind": "local_holiday",
    }
    assert days["2026-12-22"]["kind"] == "closure"
    assert days["2026-01-03"]["kind"] == "weekend"
    assert "2026-12-07" not in days  # Madrid's, not Catalonia's
    # another tenant sees the public calendar only
    public = client.get("/v1/calendars/ES-CT?year=2026", headers=other).json()
    assert public["name"] == "ES-CT" and "2026-12-21" not in {
        d["date"] for d in public["non_business_days"]
    }
    madrid = client.get("/v1/calendars/ES-MD?year=2026", headers=key).json()
    assert {"2026-04-02", "2026-05-02", "2026-11-02", "2026-12-07"} <= {
        d["date"] for d in madrid["non_business_days"]
    }


def test_the_calculator_counts_with_the_tenants_days(
    sealpost: Sealpost, client: TestClient
) -> None:
    key = _key(sealpost, "agent")
    query = "/v1/deadlines/compute?calendar=ES-CT&from=2026-12-18&amount=10&unit=business_days"
    public = client.get(query, headers=key)
    assert public.status_code == 200, public.text
    body = public.json()
    assert body["ends_on"] == "2027-01-05"  # over Christmas, Sant Esteve and New Year
    assert body["ends_at"] == "2027-01-05T22:59:59.999000Z"
    assert body["calendar_name"] == "ES-CT" and body["data_version"].startswith("holidays ")
    assert "2026-12-25" in {s["date"] for s in body["skipped"]}
    assert body["text"].startswith("The 10-business-day term in ES-CT (holidays ")
    assert client.put("/v1/calendars/ES-CT/days", json=LOCAL_DAYS, headers=key).status_code == 200
    local = client.get(query, headers=key).json()
    assert local["ends_on"] == "2027-01-08"  # two more days do not count (nor 6 Jan)
    assert local["calendar_name"] == "ES-CT + 2 local days"
    natural = client.get(
        "/v1/deadlines/compute?calendar=ES-CT&from=2026-06-14&amount=10&unit=natural_days",
        headers=key,
    ).json()
    assert natural["ends_on"] == "2026-06-25"  # 24 Jun (Sant Joan) rolled forward


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/calendars/XX", None),
        ("GET", "/v1/calendars/ES-ZZ/days", None),
        ("PUT", "/v1/calendars/ES-ZZ/days", LOCAL_DAYS),
        ("GET", "/v1/deadlines/compute?calendar=ES-ZZ&from=2026-12-18&amount=10", None),
    ],
)
def test_an_unknown_calendar_is_a_422_naming_it(
    sealpost: Sealpost, client: TestClient, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body, headers=_key(sealpost, "t"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:sealpost:problem:unknown_calendar"
    assert problem["calendar"] in ("XX", "ES-ZZ")


def test_bad_days_are_refused_and_the_stored_ones_kept(
    sealpost: Sealpost, client: TestClient
) -> None:
    key = _key(sealpost, "t")
    assert client.put("/v1/calendars/ES-CT/days", json=LOCAL_DAYS, headers=key).status_code == 200
    twice = {"days": [LOCAL_DAYS["days"][0], LOCAL_DAYS["days"][0]]}
    bad_kind = {"days": [{"date": "2026-12-23", "name": "x", "kind": "party"}]}
    bad_date = {"days": [{"date": "2026-02-30", "name": "x"}]}
    for body in (twice, bad_kind, bad_date):
        response = client.put("/v1/calendars/ES-CT/days", json=body, headers=key)
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith(":invalid_input")
    kept = client.get("/v1/calendars/ES-CT/days", headers=key).json()["days"]
    assert [d["date"] for d in kept] == ["2026-12-21", "2026-12-22"]
    assert client.get("/v1/calendars/ES-CT", headers={}).status_code == 401
    wrong = client.get(
        "/v1/deadlines/compute?calendar=ES&from=2026-12-18&amount=10&unit=business_days"
        "&variant=it_art155_cpc",
        headers=key,
    )
    assert wrong.status_code == 422 and "natural days only" in wrong.json()["detail"]
