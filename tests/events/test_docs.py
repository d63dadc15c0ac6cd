"""docs/events.md says what is sent, and its two programs work as written: the RabbitMQ
consumer against the real broker, the webhook receiver against the real sender."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import build
from sealpost.config import Settings
from sealpost.events.registry import REGISTRY
from tests.support.amqp import Topology, delete_queue
from tests.support.mail import accept_one
from tests.support.smtp_peer import free_port

DOCS = Path(__file__).parents[2] / "docs" / "events.md"


def program(name: str) -> str:
    text = DOCS.read_text()
    found = re.search(rf"<!-- docs-test: {name} -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found, f"no {name} program in docs/events.md"
    return found.group(1)


def test_every_event_type_is_documented_with_its_payload() -> None:
    text = DOCS.read_text()
    for kind in REGISTRY.kinds:
        section = re.search(
            rf"#### `{re.escape(kind.type)}`\n.*?```json\n(.*?)```", text, re.DOTALL
        )
        assert section, f"{kind.type} has no sample in docs/events.md"
        sample = json.loads(section.group(1))
        assert sample["type"] == kind.type
        assert sample["specversion"] == "1.0"
        assert sample["subject"].split("/")[0] in (
            "communications",
            "submissions",
            "webhooks",
            "signatures",
            "sms",
            "sequences",
            "archive",
        )
        assert len(sample["sequence"]) == 20 and sample["sequence"].isdigit()
        assert f"| `{kind.type}` |" in text


class Lines:
    """A subprocess's stdout, read line by line in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("sealpost."):  # what the program prints, not a server's log
                self.lines.append(line.rstrip("\n"))

    def wait_for(self, count: int, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"got {self.lines}")
            time.sleep(0.05)
        return self.lines

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.thread.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def sqlite_settings(tmp_path: Path, keys_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'sealpost.db'}",
        keys_dir=keys_dir,
        batch_window_ms=10,
        delivery_enabled=False,
        certificates_enabled=False,
        smtp_enabled=False,
        webhook_allow_private_networks=True,
    )


def accept(sp, tenant_id: str, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [accept_one(sp, tenant_id, f"r{i}") for i in range(n)]


def test_the_documented_consumer_works_as_written(
    sqlite_settings: Settings, amqp: Topology, tmp_path: Path
) -> None:
    script = tmp_path / "consumer.py"
    script.write_text(program("amqp-consumer"))
    sp = build(sqlite_settings.model_copy(update=amqp.settings()))
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    sp.start_events()
    consumer = None
    try:
        ids = accept(sp, tenant.id, 3)
        deadline = time.monotonic() + 20
        while sp.outbox.cursor("amqp") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # published: the queue exists
        env = {
            "PATH": "/usr/bin:/bin",
            "AMQP_URL": amqp.url,
            "SEALPOST_QUEUE": amqp.queue(tenant.id),
        }
        consumer = Lines([sys.executable, str(script)], env)
        lines = consumer.wait_for(3)
        assert sorted(lines) == sorted(
            f"sealpost.communication.accepted communications/{cid} 1" for cid in ids
        )
    finally:
        if consumer is not None:
            consumer.stop()
        sp.stop_background()
        sp.engine.dispose()
        delete_queue(amqp.queue(tenant.id))


def test_the_documented_receiver_works_as_written(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    sp = build(sqlite_settings)
    tenant = sp.tenants.create("docs")
    key = {"Authorization": f"Bearer {sp.tenants.issue_api_key(tenant.id, 'd').secret}"}
    script = tmp_path / "receiver.py"
    script.write_text(program("webhook-receiver"))
    port = free_port()
    receiver = None
    with TestClient(create_app(sp, start_background=False)) as client:
        endpoint = client.post(
            "/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hook"}, headers=key
        ).json()
        env = {
            "PATH": "/usr/bin:/bin",
            "PORT": str(port),
            "SEALPOST_WEBHOOK_SECRET": endpoint["secret"],
        }
        receiver = Lines([sys.executable, str(script)], env)
        try:
            deadline = time.monotonic() + 10
            while True:  # until it listens
                result = client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=key).json()
                if result["success"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert result["status_code"] == 204
            sp.start_events()
            cid = accept(sp, tenant.id, 1)[0]
            lines = receiver.wait_for(2)
            assert lines[1] == f"sealpost.communication.accepted communications/{cid}"
            forged = httpx.post(
                f"http://127.0.0.1:{port}/hook",
                content=b'{"id": "x", "type": "sealpost.communication.delivered"}',
                headers={
                    "webhook-id": "x",
                    "webhook-timestamp": str(int(time.time())),
                    "webhook-signature": "v1,AAAA",
                },
            )
            assert forged.status_code == 400
        finally:
            receiver.stop()
            sp.stop_background()
            sp.engine.dispose()
