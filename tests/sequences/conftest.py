"""Fixtures: a Sealpost with real SMTP (aiosmtpd) and SMPP (tests/support/smsc.py) peers,
the sequences' clock frozen (the test moves it), the scheduler driven by the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.config import Settings
from tests.sms.conftest import sms_settings
from tests.support.mail import email_settings
from tests.support.smsc import SmscPeer
from tests.support.smtp_peer import RecipientServer


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class SeqEnv:
    sp: Sealpost
    client: TestClient
    auth: dict[str, str]
    tenant_id: str
    clock: FrozenClock
    peer: RecipientServer | None = None
    smsc: SmscPeer | None = None


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def _env(sp: Sealpost) -> Iterator[SeqEnv]:
    clock = FrozenClock(T0)
    sp.clock = clock
    tenant = sp.tenants.create(f"acme-{uuid.uuid4().hex[:6]}")
    key = sp.tenants.issue_api_key(tenant.id, "crm").secret
    with TestClient(create_app(sp, start_background=False)) as client:
        yield SeqEnv(sp, client, {"Authorization": f"Bearer {key}"}, tenant.id, clock)


@pytest.fixture
def seq_env(settings: Settings) -> Iterator[SeqEnv]:
    """Storage only: messages are accepted (with their evidence) and not delivered."""
    sp = build(settings.model_copy(update={"delivery_enabled": False, "smtp_enabled": False}))
    try:
        yield from _env(sp)
    finally:
        sp.stop_background()
        sp.engine.dispose()


@pytest.fixture
def peers_env(settings: Settings) -> Iterator[SeqEnv]:
    """Real peers: the email is delivered to aiosmtpd, the SMS to the SMSC."""
    smsc = SmscPeer().start()
    try:
        with RecipientServer([]) as peer:
            s = email_settings(settings, peer.port, certificates_enabled=False)
            s = sms_settings(s, smsc, smtp_enabled=True, delivery_enabled=True)
            sp = build(s)
            try:
                sp.start_background()
                sp.start_email()
                sp.start_sms()
                for env in _env(sp):
                    env.peer, env.smsc = peer, smsc
                    yield env
            finally:
                sp.stop_background()
                sp.engine.dispose()
    finally:
        smsc.stop()
