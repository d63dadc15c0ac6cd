"""The SMPP adapter on its own, against the SMSC peer: ids per segment, receipts handed to
the sink before they are acknowledged."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sealpost.sms.model import split
from sealpost.sms.providers import DeliveryReport, OutboundSms
from sealpost.sms.smpp import SmppConfig, SmppProvider
from tests.support.smsc import SmscPeer


class FlakySink:
    """Fails to store the first ``failures`` reports (a database away), then keeps them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.kept: list[DeliveryReport] = []

    def report(self, report: DeliveryReport) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("database away")
        self.kept.append(report)


@pytest.fixture
def flaky() -> FlakySink:
    return FlakySink(failures=2)


@pytest.fixture
def provider(smsc: SmscPeer, flaky: FlakySink) -> Iterator[SmppProvider]:
    adapter = SmppProvider(
        SmppConfig("127.0.0.1", smsc.port, smsc.system_id, smsc.password, timeout_seconds=2.0),
        flaky,
    )
    try:
        yield adapter
    finally:
        adapter.close()


def test_a_receipt_the_sink_cannot_store_is_refused_and_comes_again(
    provider: SmppProvider, flaky: FlakySink, smsc: SmscPeer
) -> None:
    text = "Aviso: " + "su factura está pendiente. " * 6  # UCS-2, 3 parts
    parts = split(text)
    submitted = provider.submit(
        OutboundSms("s1", "Acme", "+34612345678", text, parts.encoding, parts.parts)
    )
    assert len(submitted.message_ids) == parts.segments == 3
    assert [t.message_id for t in smsc.taken("34612345678")] == list(submitted.message_ids)
    deadline = time.monotonic() + 10
    while len(flaky.kept) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(r.message_id for r in flaky.kept) == sorted(submitted.message_ids)
    assert smsc.refused_receipts == 2  # answered ESME_RX_T_APPN, so the SMSC kept them
    assert all(r.state == "delivered" and b"stat:DELIVRD" in r.raw for r in flaky.kept)
    deadline = time.monotonic() + 5
    while smsc.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not smsc.pending  # every receipt acknowledged once stored


def test_a_wrong_password_is_a_temporary_failure_naming_the_bind(smsc: SmscPeer) -> None:
    from sealpost.sms.providers import TemporaryFailure

    adapter = SmppProvider(
        SmppConfig("127.0.0.1", smsc.port, smsc.system_id, "wrong", timeout_seconds=1.0),
        FlakySink(0),
    )
    try:
        with pytest.raises(TemporaryFailure) as caught:
            adapter.submit(OutboundSms("s2", "Acme", "+34612345678", "hola", "gsm7", ["hola"]))
        assert "unreachable" in caught.value.reason and caught.value.status == "unbound"
        assert smsc.submissions == []
    finally:
        adapter.close()
