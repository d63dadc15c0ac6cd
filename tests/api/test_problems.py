"""Every error answer is an RFC 9457 problem (application/problem+json) that a client can act
on: a stable ``type``, the ``detail`` in words, and the structured fields the error carries."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.errors import InvalidInput, SealpostError
from sealpost.ledger.errors import RecordError
from tests.support.records import submission

PROBLEM = "application/problem+json"


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def key(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"urn:sealpost:problem:{code}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["error"] == code and body["message"] == body["detail"]
    return body


def test_a_schema_violation_names_each_field_and_reason(
    client: TestClient, key: dict[str, str]
) -> None:
    response = client.post("/v1/communications", headers=key, json={"to": "not-a-list"})
    body = _problem(response, 422, "invalid_input")
    errors = body["errors"]
    assert isinstance(errors, list)
    fields = {e["field"] for e in errors}
    assert "to" in fields, errors
    assert all(e["reason"] for e in errors)


def test_malformed_json_is_a_400_problem_not_a_bare_detail(
    client: TestClient, key: dict[str, str]
) -> None:
    response = client.post(
        "/v1/communications",
        headers={**key, "Content-Type": "application/json"},
        content=b'{"from": "a@b.example", "to": [',
    )
    body = _problem(response, 400, "bad_request")
    assert "not valid JSON" in str(body["detail"])
    assert "detail" in body and not isinstance(body["detail"], list)
    assert [e["field"] for e in body["errors"]] == ["body"]  # type: ignore[union-attr]


def test_unknown_routes_and_methods_are_problems(client: TestClient, key: dict[str, str]) -> None:
    _problem(client.get("/v1/nothing-here", headers=key), 404, "not_found")
    _problem(client.delete("/v1/communications", headers=key), 405, "method_not_allowed")


def test_an_unknown_id_is_a_404_problem(client: TestClient, key: dict[str, str]) -> None:
    body = _problem(client.get("/v1/evidence/no-such-record", headers=key), 404, "not_found")
    assert "no-such-record" in str(body["detail"])


def test_not_sealed_yet_says_when_to_retry(
    client: TestClient, key: dict[str, str], sealpost: Sealpost, tenant_id: str
) -> None:
    record = submission(tenant_id, 0)
    sealpost.log_storage.append([record])
    response = client.get(f"/v1/evidence/{record.id}", headers=key)
    _problem(response, 409, "not_sealed_yet")
    assert response.headers["retry-after"] == "1"


def test_structured_fields_of_an_error_become_members() -> None:
    error = RecordError("must be a SHA-256 hex digest", field="content.sha256")
    assert error.code == "invalid_record"
    assert error.extensions() == {"field": "content.sha256"}
    assert InvalidInput("x").extensions() == {}


def _all_error_classes() -> list[type[SealpostError]]:
    import sealpost

    for module in pkgutil.walk_packages(sealpost.__path__, "sealpost."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    found: list[type[SealpostError]] = []
    todo: list[type[SealpostError]] = [SealpostError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_kind_has_a_consistent_documented_code() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    for cls in _all_error_classes():
        if cls is SealpostError:
            continue
        assert f"`{cls.code}`" in docs, f"{cls.__name__}.code {cls.code!r} is not in docs/api.md"
        for parent in cls.__mro__[1:]:
            if (
                isinstance(parent, type)
                and issubclass(parent, SealpostError)
                and parent.status != cls.status
            ):
                assert parent.code != cls.code, (
                    f"{cls.__name__} ({cls.status}) answers the code of {parent.__name__} "
                    f"({parent.status}): a client would take one for the other"
                )


def test_an_unexpected_error_is_a_500_problem_without_its_text(sealpost: Sealpost) -> None:
    app = create_app(sealpost, start_background=False)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret path /etc/sealpost/keys/seal.key")

    @app.get("/database-gone")
    def database_gone() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    with TestClient(app, raise_server_exceptions=False) as client:
        body = _problem(client.get("/boom"), 500, "internal_error")
        assert "secret" not in str(body) and "incident" in str(body["detail"])
        gone = client.get("/database-gone")
        _problem(gone, 503, "unavailable")
        assert gone.headers["retry-after"] == "1"


def test_a_method_a_path_does_not_answer_is_a_405_naming_every_one_it_does(
    client: TestClient, key: dict[str, str]
) -> None:
    """OPTIONS is answered nowhere (no CORS: the API is for servers), and Allow lists what
    the path answers (for /v1/events/replay, Starlette named GET: /v1/events/{event_id} took
    "replay" for an id; an event id is a UUID now, in the route too)."""
    for method, path, allowed in [
        ("OPTIONS", "/v1/events/replay", "POST"),
        ("PUT", "/v1/events/replay", "POST"),
        ("GET", "/v1/events/replay", "POST"),
        ("OPTIONS", "/v1/webhooks", "GET, POST"),
        ("DELETE", "/v1/communications", "GET, POST"),
        ("POST", "/v1/settings/signing", "GET, PUT"),
        ("HEAD", "/v1/signatures", "GET, POST"),
    ]:
        response = client.request(method, path, headers=key)
        assert response.headers["allow"] == allowed, (method, path)
        if method != "HEAD":
            body = _problem(response, 405, "method_not_allowed")
            assert f"allowed: {allowed}" in str(body["detail"])


def test_an_empty_filter_is_no_filter(client: TestClient, key: dict[str, str]) -> None:
    for path in (
        "/v1/communications?status=",
        "/v1/communications?status=&status=failed",
        "/v1/communications?recipient=",
        "/v1/signatures?status=",
        "/v1/events?after=",
        "/v1/communications?cursor=",
    ):
        response = client.get(path, headers=key)
        assert response.status_code == 200, (path, response.text)
    refused = client.get("/v1/communications?status=lost", headers=key)
    body = _problem(refused, 422, "invalid_input")
    assert "status.0: must be one of queued, delivered, relayed, failed" in str(body["detail"])


def test_what_the_schema_allows_is_what_the_api_takes(
    client: TestClient, key: dict[str, str]
) -> None:
    """The schema states the real constraints: an empty URL breaks minLength (a 422 naming
    url, as the schema says), a time without a zone or given as a number is refused, a
    string is not a boolean."""
    spec = client.get("/openapi.json").json()
    url = spec["components"]["schemas"]["EndpointIn"]["properties"]["url"]
    assert url["minLength"] >= 8 and url["pattern"].startswith("^https?://")
    body = _problem(
        client.post("/v1/webhooks", json={"url": ""}, headers=key), 422, "invalid_input"
    )
    assert [e["field"] for e in body["errors"]] == ["url"]  # type: ignore[union-attr]
    for moment in ("2026-11-23T10:00:00", "1700000000", "0.5"):
        response = client.get("/v1/communications", params={"from": moment}, headers=key)
        _problem(response, 422, "invalid_input")
    bracketed = {"url": "http://[7]/hook"}  # not an IPv6 address: urlsplit raised, a 500
    _problem(client.post("/v1/webhooks", json=bracketed, headers=key), 422, "invalid_input")
    enabled = {"url": "https://93.184.215.14/hook", "enabled": "true"}
    _problem(client.post("/v1/webhooks", json=enabled, headers=key), 422, "invalid_input")


def test_the_openapi_document_lists_problems_and_only_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec) and "ValidationError" not in spec["components"]
    problem = {"$ref": "#/components/schemas/Problem"}
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            for status, response in responses.items():
                if int(status) >= 400 and not (path in ("/healthz", "/readyz") and status == "503"):
                    assert response["content"] == {PROBLEM: {"schema": problem}}, where
            if path.startswith("/v1/"):
                assert {"401", "429", "503"} <= set(responses), where
                assert operation["security"] == [{"bearer": []}, {"apiKey": []}], where
            if "{" in path:
                assert "404" in responses, where
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                assert {"400", "413", "422"} <= set(responses), where
