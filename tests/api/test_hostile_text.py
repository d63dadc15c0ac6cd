"""Hostile text in every text field of the API is a 422 naming the field, never a 500 (issue 12,
defect 3), on SQLite and on PostgreSQL (which refuses NUL in text: a plain 500 before).

Each case sends one hostile value to one field of an otherwise valid request: NUL and the
other controls everywhere; CR, LF, U+0085, U+2028 and U+2029 in one-line fields (a subject, a
name, a title: they end up in email headers, where Python's email package counts each as a
line break).  A frame-ancestors origin with a control character is refused, and the tenant's
signing pages keep working, even with such a value stored before this check existed.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from tests.signatures.flow import contract_pdf

PROBLEM = "application/problem+json"

NUL = "a\x00b"
CONTROLS = ["a\x00b", "a\x1bb", "a\x7fb", "a\x9bb"]
"""Refused in every text field."""
LINE_BREAKS = ["a\r\nBcc: x@evil.example", "a\nb", "a\u0085b", "a\u2028b", "a\u2029b", "a\tb"]
"""Refused in one-line fields too (TAB included: a name or title has no use for it)."""


def _send() -> dict[str, Any]:
    return {
        "from": "care@acme.example",
        "to": ["jane@customer.example"],
        "cc": ["carl@customer.example"],
        "bcc": ["audit@acme.example"],
        "subject": "Your claim",
        "text": "plain text",
        "html": "<p>html</p>",
        "attachments": [{"filename": "a.txt", "content": "eA=="}],
    }


def _raw_send() -> dict[str, Any]:
    raw = b"From: care@acme.example\r\nTo: jane@customer.example\r\nSubject: x\r\n\r\nhi\r\n"
    return {"raw": base64.b64encode(raw).decode(), "recipients": ["jane@customer.example"]}


def _process() -> dict[str, Any]:
    return {
        "title": "Repair quote",
        "message": "Please sign.",
        "consent_text": "I agree to sign electronically.",
        "documents": [{"name": "quote.pdf", "content": base64.b64encode(PDF).decode()}],
        "signers": [
            {
                "name": "Jane Customer",
                "email": "jane@customer.example",
                "identification": "none",
                "fields": [{"document": 0, "anchor": "1"}],
            }
        ],
    }


def _webhook() -> dict[str, Any]:
    return {
        "url": "https://93.184.215.14/hook",
        "description": "CRM",
        "event_types": ["sealpost.communication.*"],
    }


PDF = contract_pdf()

# (method, path, valid body, where the hostile value goes, one line?)
FIELDS: list[tuple[str, str, Any, str, bool]] = [
    ("POST", "/v1/communications", _send, "from", True),
    ("POST", "/v1/communications", _send, "to.0", True),
    ("POST", "/v1/communications", _send, "cc.0", True),
    ("POST", "/v1/communications", _send, "bcc.0", True),
    ("POST", "/v1/communications", _send, "subject", True),
    ("POST", "/v1/communications", _send, "text", False),
    ("POST", "/v1/communications", _send, "html", False),
    ("POST", "/v1/communications", _send, "attachments.0.filename", True),
    ("POST", "/v1/communications", _raw_send, "recipients.0", True),
    ("POST", "/v1/signatures", _process, "title", True),
    ("POST", "/v1/signatures", _process, "message", False),
    ("POST", "/v1/signatures", _process, "consent_text", False),
    ("POST", "/v1/signatures", _process, "documents.0.name", True),
    ("POST", "/v1/signatures", _process, "signers.0.name", True),
    ("POST", "/v1/signatures", _process, "signers.0.email", True),
    ("POST", "/v1/signatures", _process, "signers.0.fields.0.anchor", True),
    ("POST", "/v1/signatures/{process}/cancel", lambda: {"reason": "no"}, "reason", False),
    ("POST", "/v1/webhooks", _webhook, "description", True),
    ("POST", "/v1/webhooks", _webhook, "url", True),
    ("POST", "/v1/webhooks", _webhook, "event_types.0", True),
    ("PATCH", "/v1/webhooks/{webhook}", lambda: {"description": "x"}, "description", True),
    (
        "PUT",
        "/v1/settings/signing",
        lambda: {"frame_ancestors": ["https://crm.example"]},
        "frame_ancestors.0",
        True,
    ),
    ("POST", "/v1/events/replay", lambda: {"event_ids": ["x"]}, "event_ids.0", True),
    ("POST", "/v1/events/replay", lambda: {"event_ids": [], "from": NOW}, "endpoint_id", True),
    (
        "POST",
        "/v1/events/replay",
        lambda: {"from": NOW, "types": ["sealpost.communication.delivered"]},
        "types.0",
        True,
    ),
    # the signing page's JSON API: the body is checked before the session
    ("POST", "/sign/api/open", lambda: {"link": "x"}, "link", True),
    ("POST", "/sign/api/otp/verify", lambda: {"code": "123456"}, "code", True),
    ("POST", "/sign/api/sign", lambda: {"consent": True, "typed": "x"}, "typed", True),
    ("POST", "/sign/api/decline", lambda: {"reason": "no"}, "reason", False),
]
NOW = "2026-12-06T10:00:00Z"


def _cases() -> Iterator[Any]:
    for method, path, body, field, one_line in FIELDS:
        values = CONTROLS + (LINE_BREAKS if one_line else [])
        yield pytest.param(method, path, body, field, values, id=f"{method} {path} {field}")


def _put(body: Any, field: str, value: str) -> Any:
    """``body`` with ``value`` at the dotted ``field`` (a list index as a number)."""
    *parents, last = field.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return body


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def key(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def _problem_naming(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:sealpost:problem:invalid_input"
    assert field in [e["field"] for e in problem["errors"]], problem
    assert f"{field}: " in problem["detail"], problem


@pytest.mark.parametrize(("method", "path", "body", "field", "values"), list(_cases()))
def test_each_hostile_value_in_each_field_is_a_422_naming_it(
    client: TestClient,
    key: dict[str, str],
    sealpost: Sealpost,
    tenant_id: str,
    method: str,
    path: str,
    body: Any,
    field: str,
    values: list[str],
) -> None:
    if "{process}" in path:
        created = client.post("/v1/signatures", json=_process(), headers=key)
        assert created.status_code == 201, created.text
        path = path.format(process=created.json()["id"])
    if "{webhook}" in path:
        created = client.post("/v1/webhooks", json=_webhook(), headers=key)
        assert created.status_code == 201, created.text
        path = path.format(webhook=created.json()["id"])
    valid = body()
    for value in values:
        hostile = _put(copy.deepcopy(valid), field, value)
        _problem_naming(client.request(method, path, json=hostile, headers=key), field)
    if not path.startswith("/sign/"):  # the same request without them is accepted
        answer = client.request(method, path, json=valid, headers=key)
        assert answer.status_code < 300, answer.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/v1/communications/{quote(NUL)}", "communication_id"),
        (f"/v1/communications/{quote(NUL)}/evidence", "communication_id"),
        (f"/v1/signatures/{quote(NUL)}", "process_id"),
        (f"/v1/webhooks/{quote(NUL)}", "endpoint_id"),
        (f"/v1/evidence/{quote(NUL)}", "record_id"),
        (f"/v1/communications?recipient={quote(NUL)}", "recipient"),
    ],
)
def test_a_nul_in_a_path_or_query_is_a_422_naming_it(
    client: TestClient, key: dict[str, str], path: str, field: str
) -> None:
    _problem_naming(client.get(path, headers=key), field)


def test_an_event_id_is_a_uuid_or_no_route(client: TestClient, key: dict[str, str]) -> None:
    response = client.get(f"/v1/events/{quote(NUL)}", headers=key)
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM


def test_a_cursor_hiding_a_nul_is_refused(client: TestClient, key: dict[str, str]) -> None:
    cursor = base64.urlsafe_b64encode(f"{NOW}|{NUL}".encode()).decode()
    for path in ("/v1/communications", "/v1/signatures"):
        response = client.get(path, params={"cursor": cursor}, headers=key)
        assert response.status_code == 422, response.text
        assert "cursor" in response.json()["detail"]


def _signing_page(client: TestClient, key: dict[str, str]) -> Any:
    created = client.post("/v1/signatures", json=_process(), headers=key)
    assert created.status_code == 201, created.text
    process = created.json()
    link = client.post(
        f"/v1/signatures/{process['id']}/signers/{process['signers'][0]['id']}/link", headers=key
    )
    assert link.status_code == 200, link.text
    return client.get(urlsplit(link.json()["url"]).path)


def _frame_ancestors(page: Any) -> str:
    found = re.search(r"frame-ancestors ([^;]*);", page.headers["content-security-policy"])
    assert found, page.headers
    return found.group(1)


@pytest.mark.parametrize(
    "origin",
    [
        "https://crm.example\x00",
        "https://crm.example\r\nX-Evil: 1",
        "https://crm.example\u2028",
        "https://crm.example/path",
        "https://crm.example 'unsafe-inline'",
        "https://例え.jp",
        "https://*.example.com",
    ],
)
def test_a_refused_frame_ancestors_update_leaves_the_signing_pages_working(
    client: TestClient, key: dict[str, str], origin: str
) -> None:
    ok = client.put(
        "/v1/settings/signing", json={"frame_ancestors": ["https://crm.example"]}, headers=key
    )
    assert ok.status_code == 200, ok.text
    refused = client.put(
        "/v1/settings/signing",
        json={"frame_ancestors": ["https://other.example", origin]},
        headers=key,
    )
    _problem_naming(refused, "frame_ancestors.1")
    assert client.get("/v1/settings/signing", headers=key).json()["frame_ancestors"] == [
        "https://crm.example"
    ]
    page = _signing_page(client, key)
    assert page.status_code == 200, page.text[:500]
    assert _frame_ancestors(page) == "https://crm.example"


def test_an_origin_stored_before_the_check_does_not_break_the_pages(
    client: TestClient, key: dict[str, str], sealpost: Sealpost, tenant_id: str
) -> None:
    """A value written by an older Sealpost (or by hand): the page drops it, keeps the rest."""
    sealpost.signatures_parts.signatures.repo.set_signing_settings(
        tenant_id,
        frame_ancestors=["https://crm.example", "https://bad.example\x00"],
        allow_active_content=False,
        now=datetime.now(UTC),
    )
    page = _signing_page(client, key)
    assert page.status_code == 200, page.text[:500]
    assert _frame_ancestors(page) == "https://crm.example"
    config = re.search(r'id="sealpost-config"[^>]*>(.*?)</script>', page.text, re.DOTALL)
    assert config and json.loads(config.group(1))["post_message_origins"] == ["https://crm.example"]


def test_origins_are_stored_in_one_exact_form(client: TestClient, key: dict[str, str]) -> None:
    answer = client.put(
        "/v1/settings/signing",
        json={
            "frame_ancestors": [
                "https://CRM.Example/",
                "http://[0:0::1]:8443",
                "https://crm.example",
            ]
        },
        headers=key,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "frame_ancestors": ["https://crm.example", "http://[::1]:8443"],
        "allow_active_content": False,
    }
