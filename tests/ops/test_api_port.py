"""``/metrics`` and ``/readyz`` on the API port (the app itself; the processes are in
test_roles_metrics.py): metrics only with the operator's token, readiness for anyone."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from sealpost.api.app import create_app
from sealpost.app import Sealpost


def test_metrics_are_not_served_on_the_api_port_without_a_token(sealpost: Sealpost) -> None:
    with TestClient(create_app(sealpost, start_background=False)) as client:
        answer = client.get("/metrics")
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("application/problem+json")
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["not_ready"] == []


def test_metrics_with_the_token_list_the_backlogs(sealpost: Sealpost) -> None:
    sealpost.settings = sealpost.settings.model_copy(
        update={"metrics_token": SecretStr("s3cret-token-for-prometheus")}
    )
    with TestClient(create_app(sealpost, start_background=False)) as client:
        assert client.get("/metrics").status_code == 401
        answer = client.get(
            "/metrics", headers={"Authorization": "Bearer s3cret-token-for-prometheus"}
        )
        assert answer.status_code == 200
        names = {f.name for f in text_string_to_metric_families(answer.text)}
        assert {
            "sealpost_delivery_queue_depth",
            "sealpost_ledger_unsealed_records",
            "sealpost_events_lag_seconds",
            "sealpost_webhook_backlog",
            "sealpost_certificate_backlog",
            "sealpost_communications_accepted",
            "sealpost_seal_batch_seconds",
        } <= names
