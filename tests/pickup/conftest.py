"""Fixtures of the pickup tests: the mail environment with the pickup worker off (the tests
run its rounds, with the clock they choose)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {"certificates_enabled": False, "pickup_worker_enabled": False}


@pytest.fixture
def client(mail_client: TestClient) -> TestClient:
    return mail_client


@pytest.fixture
def key(mail_key: dict[str, str]) -> dict[str, str]:
    return mail_key
