"""The real RabbitMQ on 127.0.0.1:5672 for tests: availability, a consumer, and clean-up.

Each test gets its own exchange and queue prefix, so tests never see each other's events, and
deletes them afterwards.  The consumer is what an integrator would run: it consumes the
tenant's queue with manual acks and keeps every delivery (redeliveries included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest

from tests.conftest import require_service

AMQP_URL = os.environ.get("SEALPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _amqp_problem() -> str | None:
    async def probe() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return repr(exc)
    return None


@pytest.fixture(scope="session")
def rabbitmq_available() -> str | None:
    return _amqp_problem()


@dataclass(frozen=True)
class Topology:
    url: str
    exchange: str
    queue_prefix: str

    def settings(self) -> dict[str, object]:
        return {
            "amqp_url": self.url,
            "amqp_exchange": self.exchange,
            "amqp_queue_prefix": self.queue_prefix,
        }

    def queue(self, tenant_id: str) -> str:
        return self.queue_prefix + tenant_id


@pytest.fixture
def amqp(rabbitmq_available: str | None) -> Iterator[Topology]:
    """A private exchange and queue prefix on the real RabbitMQ, deleted after the test."""
    if rabbitmq_available:
        require_service("RabbitMQ", rabbitmq_available)
    tag = uuid.uuid4().hex[:10]
    topology = Topology(AMQP_URL, f"test.{tag}.events", f"test.{tag}.events.")
    yield topology
    ensure_broker_running()

    async def clean() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        channel = await connection.channel()
        await channel.exchange_delete(topology.exchange)
        await connection.close()

    asyncio.run(clean())


def delete_queue(name: str) -> None:
    async def run() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await connection.close()

    asyncio.run(run())


@dataclass
class Delivered:
    message_id: str
    body: bytes
    redelivered: bool
    properties: dict[str, Any]

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


class QueueConsumer:
    """Consumes one queue in a thread of its own; survives a broker restart (reconnects)."""

    def __init__(self, queue: str, url: str = AMQP_URL) -> None:
        self.queue = queue
        self.url = url
        self.received: list[Delivered] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        with self._lock:
            self.received.append(
                Delivered(
                    message.message_id or "",
                    message.body,
                    message.redelivered or False,
                    {
                        "content_type": message.content_type,
                        "delivery_mode": int(message.delivery_mode or 0),
                        "type": message.type,
                    },
                )
            )
        await message.ack()

    async def _run(self) -> None:
        """A callback consumer, as docs/events.md shows.  (Never cancel an aio-pika queue
        iterator's ``__anext__`` with a timeout: that closes the iterator and requeues the
        prefetched messages, which then come back out of order.)"""
        while not self._stop.is_set():
            try:
                connection = await aio_pika.connect(self.url, timeout=5)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=200)
                queue = await channel.get_queue(self.queue, ensure=True)
                await queue.consume(self._on_message)
                while not self._stop.is_set() and not channel.is_closed:
                    await asyncio.sleep(0.05)
            except Exception:
                await asyncio.sleep(0.2)  # queue not declared yet, or the broker went away
            finally:
                with contextlib.suppress(Exception):  # already gone with the broker
                    await connection.close()

    def events(self) -> list[Delivered]:
        with self._lock:
            return list(self.received)

    def unique(self) -> dict[str, Delivered]:
        """Deduplicated by event id, as the docs tell consumers to."""
        out: dict[str, Delivered] = {}
        for d in self.events():
            out.setdefault(d.message_id, d)
        return out

    def wait_unique(self, count: int, timeout: float = 60.0) -> dict[str, Delivered]:
        deadline = time.monotonic() + timeout
        while len(self.unique()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.unique())} unique events, expected {count}")
            time.sleep(0.05)
        return self.unique()

    def __enter__(self) -> QueueConsumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def ensure_broker_running() -> None:
    """After a stop_app test, whatever happened: the broker is up for the next test."""
    if _amqp_problem() is None:
        return
    subprocess.run(
        ["rabbitmqctl", "-q", "start_app"], check=False, capture_output=True, timeout=120
    )
    deadline = time.monotonic() + 60
    while _amqp_problem() is not None and time.monotonic() < deadline:
        time.sleep(0.5)
