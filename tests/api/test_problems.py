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
