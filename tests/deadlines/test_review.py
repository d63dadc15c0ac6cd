"""Review of legal deadlines (issue 14): a calendar code with an empty subdivision is an
unknown calendar, never silently the country's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.deadlines.calendars import UnknownCalendar, calendar_for


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


def test_a_code_with_an_empty_subdivision_is_no_calendar(
    sealpost: Sealpost, client: TestClient
) -> None:
    """``ES-`` (a subdivision left out by mistake) used to count on Spain's national calendar,
    missing the region's holidays, and the certificate then named ``ES``."""
    with pytest.raises(UnknownCalendar):
        calendar_for("ES-")
    tenant = sealpost.tenants.create("calc")
    auth = {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant.id, 'crm').secret}"}
    answer = client.get(
        "/v1/deadlines/compute?calendar=ES-&from=2026-12-18&amount=10", headers=auth
    )
    assert answer.status_code == 422, answer.text
