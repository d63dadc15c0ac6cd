"""Publishing events to RabbitMQ: a durable topic exchange and one FIFO queue per tenant.

Topology (declared by Sealpost, idempotently, on first use of each tenant):

- exchange ``sealpost.events`` (``SEALPOST_AMQP_EXCHANGE``), type *topic*, durable;
- routing key ``<tenant id>.<event type>``, e.g. ``7c1e….sealpost.communication.delivered``;
- queue ``sealpost.events.<tenant id>``, durable, bound with ``<tenant id>.#``: a *quorum*
  queue by default (replicated, FIFO, ``x-single-active-consumer`` so that even several
  consumers process it one at a time, in order), or a *classic* durable queue with single
  active consumer (``SEALPOST_AMQP_QUEUE_TYPE=classic``).

Messages are persistent (``delivery_mode`` 2), ``content_type`` ``application/cloudevents+json``,
``message_id`` the event id, ``type`` the event type; the body is the CloudEvent.  The channel
uses publisher confirms and ``mandatory``: :meth:`AmqpPublisher.publish` reports how many
events, from the first, the broker confirmed; only those are marked published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.common import FieldTable

from sealpost.events.cloudevents import CONTENT_TYPE
from sealpost.events.outbox import StoredEvent
from sealpost.logging import get_logger

log = get_logger(__name__)


def routing_key(event: StoredEvent) -> str:
    return f"{event.tenant_id}.{event.type}"


def queue_arguments(queue_type: str) -> FieldTable:
    arguments: FieldTable = {"x-single-active-consumer": True}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return arguments


class AmqpPublisher:
    """One connection and one confirming channel; reconnects on the next call after a fault."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "sealpost.events",
        queue_prefix: str = "sealpost.events.",
        queue_type: str = "quorum",
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.queue_prefix = queue_prefix
        self.queue_type = queue_type
        self.timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._declared: set[str] = set()
        self._broken = False
        self._sending = asyncio.Lock()
        """Held while a batch connects, declares and enqueues its publishes: batches reach the
        channel whole and in call order, even when two reconnect at once."""

    def queue_name(self, tenant_id: str) -> str:
        return self.queue_prefix + tenant_id

    def attach(self) -> None:
        """Start afresh on the running event loop: a connection and a lock belong to the
        event loop that made them, and a supervisor restarts a failed loop on a new one (the
        old connection, if any, died with its loop)."""
        self._connection = None
        self._channel = self._exchange = None
        self._declared.clear()
        self._sending = asyncio.Lock()
        self._broken = False

    def reset(self) -> None:
        """Allow a new connection after a failure, once the caller has given up every
        publish in flight (see :meth:`publish`)."""
        self._broken = False

    async def _ready(self) -> AbstractExchange:
        if self._broken:
            raise ConnectionError("an earlier publish failed: reset() before publishing again")
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        await self.close()
        self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        log.info("events.amqp_connected", exchange=self.exchange_name)
        return self._exchange

    async def _declare_tenant(self, exchange: AbstractExchange, tenant_id: str) -> str:
        """The tenant's queue, bound to its events (idempotent on the broker)."""
        assert self._channel is not None
        name = self.queue_name(tenant_id)
        queue = await self._channel.declare_queue(
            name, durable=True, arguments=queue_arguments(self.queue_type)
        )
        await queue.bind(exchange, routing_key=f"{tenant_id}.#")
        self._declared.add(tenant_id)
        return name

    async def publish(self, events: Sequence[StoredEvent]) -> int:
        """Publish in order; returns how many, from the first, the broker confirmed.

        The publishes are pipelined on one channel (its lock keeps them in call order, and a
        queue keeps publish order), then every confirm is awaited.  Anything short of all
        confirmed closes the connection and *breaks* the publisher: until :meth:`reset`, every
        publish fails, so that no later batch can reach the queue, on a new connection, ahead
        of the unconfirmed ones.  The caller publishes again from the first unconfirmed:
        consumers may see duplicates (same ``message_id``), never a gap.  (Order holds too,
        but for one case: a broker *nack* of one message while the connection lives on lets
        the publishes already queued behind it land before its retry.  RabbitMQ nacks only on
        an internal error of the queue.)
        """
        if not events:
            return 0
        async with self._sending:
            exchange = await self._ready()
            for tenant_id in {e.tenant_id for e in events} - self._declared:
                await self._declare_tenant(exchange, tenant_id)
            # tasks run in creation order: this batch's publishes take the channel's lock
            # before any later batch's, which can only start creating its own after this
            publishes = [asyncio.ensure_future(self._publish(exchange, e)) for e in events]
        results = await asyncio.gather(*publishes, return_exceptions=True)
        confirmed = 0
        for result in results:
            if isinstance(result, BaseException):
                log.warning("events.amqp_unconfirmed", error=repr(result), confirmed=confirmed)
                self._broken = True
                await self.close()  # (a queue deleted under us is declared again, too)
                break
            confirmed += 1
        return confirmed

    async def _publish(self, exchange: AbstractExchange, event: StoredEvent) -> object:
        return await exchange.publish(
            aio_pika.Message(
                event.payload.encode(),
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event.id,
                type=event.type,
                timestamp=event.time,
                app_id="sealpost",
            ),
            routing_key=routing_key(event),
            mandatory=True,
            timeout=self.timeout,
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        self._declared.clear()
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception as exc:  # already broken: nothing more to release
                log.debug("events.amqp_close_failed", error=repr(exc))
