"""Fixtures: Sealpost with the SMPP adapter bound to a real SMSC peer on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.sms.model import Sms
from tests.support.smsc import SmscPeer


@dataclass
class SmsEnv:
    sp: Sealpost
    tenant_id: str
    client: TestClient
    key: str
    smsc: SmscPeer

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def send(self, to: str, text: str, **extra: object) -> str:
        answer = self.client.post(
            "/v1/sms", json={"to": to, "text": text, **extra}, headers=self.auth
        )
        assert answer.status_code == 201, answer.text
        sms_id: str = answer.json()["id"]
        return sms_id

    def wait_for(self, sms_id: str, predicate: Callable[[Sms], bool], timeout: float = 20.0) -> Sms:
        deadline = time.monotonic() + timeout
        while True:
            found = self.sp.sms_repository.get(sms_id)
            if found is not None and predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last state: {found}")
            time.sleep(0.05)

    def wait_status(self, sms_id: str, *statuses: str, timeout: float = 20.0) -> Sms:
        return self.wait_for(sms_id, lambda s: s.status in statuses, timeout)

    def detail(self, sms_id: str) -> dict[str, object]:
        answer = self.client.get(f"/v1/sms/{sms_id}", headers=self.auth)
        assert answer.status_code == 200, answer.text
        body: dict[str, object] = answer.json()
        return body


@pytest.fixture
def smsc() -> Iterator[SmscPeer]:
    peer = SmscPeer().start()
    try:
        yield peer
    finally:
        peer.stop()


def sms_settings(settings: Settings, smsc: SmscPeer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "sms_provider": "smpp",
        "smpp_host": "127.0.0.1",
        "smpp_port": smsc.port,
        "smpp_system_id": smsc.system_id,
        "smpp_password": SecretStr(smsc.password),
        "smpp_timeout_seconds": 2.0,
        "sms_retry_initial_seconds": 0.2,
        "sms_retry_max_seconds": 1.0,
        "sms_confirm_interval_seconds": 0.2,
        "smtp_enabled": False,
        "delivery_enabled": False,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture
def sms_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
def sms_env(
    settings: Settings, smsc: SmscPeer, sms_overrides: dict[str, object]
) -> Iterator[SmsEnv]:
    sp = build(sms_settings(settings, smsc, **sms_overrides))
    tenant = sp.tenants.create("acme")
    key = sp.tenants.issue_api_key(tenant.id, "test").secret
    try:
        with TestClient(create_app(sp, start_background=False)) as client:
            sp.start_sms()
            yield SmsEnv(sp, tenant.id, client, key, smsc)
    finally:
        sp.stop_background()
        sp.engine.dispose()
