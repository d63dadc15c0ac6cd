"""SMTP acceptor processes each serve their own ``/metrics``: together they count every
message, as the docs tell operators to scrape them (docs/monitoring.md)."""

from __future__ import annotations

import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

MESSAGES = 40


def _two_free_ports() -> int:
    """A port whose next one is free too (the acceptor's)."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise AssertionError("no two consecutive free ports")


def _accepted(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sealpost_communications_accepted_total" and s.labels == {"channel": "smtp"}
    )


def test_each_acceptor_process_is_scraped_on_its_own_port(tmp_path: Path, keys_dir: Path) -> None:
    port, ops = free_port(), _two_free_ports()
    env = serve_env(
        tmp_path / "data",
        keys_dir,
        port,
        SEALPOST_SMTP_PROCESSES="2",
        SEALPOST_OPS_PORT=str(ops),
        SEALPOST_DELIVERY_ENABLED="false",
    )
    sealpost = SealpostProcess(tmp_path, env, port)
    sealpost.run("tenant", "create", "Relay")
    sealpost.run("tenant", "smtp-network", "Relay", "127.0.0.1/32")

    def send(n: int) -> int:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("mta.acme.test")
            client.mail("service@acme.test")
            client.rcpt(f"p{n}@{RECIPIENT_DOMAIN}")
            code, _ = client.data(f"From: service@acme.test\r\nSubject: {n}\r\n\r\nhi\r\n")
            return code

    try:
        sealpost.start(role="smtp")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the acceptor starts its listener after its own
            try:
                if httpx.get(f"http://127.0.0.1:{ops + 1}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(
                f"the acceptor's ops listener did not answer: {sealpost.log_tail()}"
            )
        assert httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=5).status_code == 200
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, range(MESSAGES)))
        assert codes == [250] * MESSAGES
        parent, child = _accepted(ops), _accepted(ops + 1)
        assert parent + child == MESSAGES, (parent, child)
    finally:
        sealpost.stop()
