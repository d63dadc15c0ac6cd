"""The events dispatcher: positions committed events, fans them out to webhooks, publishes
them to RabbitMQ.  One active dispatcher at a time, elected by the ``events-dispatcher`` lease.

Two loops on one event loop:

1. *Position* (every poll interval): committed events without a position get the next ones,
   and one pending webhook delivery per matching endpoint, in one transaction fenced on the
   lease.
2. *Publish* (when ``SEALPOST_AMQP_URL`` is set): events after the ``amqp`` cursor, in position
   order, with publisher confirms, several batches in flight; the cursor moves (compare-and-set)
   only past what the broker confirmed.  A broker outage leaves events waiting behind the
   cursor; they flow, in order, when it is back.  A dispatcher killed between the confirms and
   the cursor update publishes the same events again after restart: at-least-once, consumers
   deduplicate on the event id.

Positioning never waits for the broker, so webhooks and the pull API go on during an outage.

The leader also applies retention, once an hour: events older than
``SEALPOST_EVENTS_RETENTION_DAYS`` (but never one the broker has not confirmed, nor one a
webhook still retries) and finished webhook deliveries as old.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from sealpost.config import Settings
from sealpost.db import leases
from sealpost.events.amqp import AmqpPublisher
from sealpost.events.outbox import (
    AMQP_CURSOR,
    DISPATCHER_LEASE,
    LeaseLost,
    OutboxRepository,
    PositionedEvent,
    StoredEvent,
    committed_signal,
)
from sealpost.events.webhooks.deliveries import Clock, utc_now
from sealpost.events.webhooks.fanout import fan_out_in
from sealpost.events.webhooks.queue import WebhookQueue
from sealpost.logging import get_logger
from sealpost.loops import round_failed, round_ok, time_left

log = get_logger(__name__)

POSITION_BATCH = 2000
PUBLISH_BATCH = 500
PUBLISH_WINDOW = 4
PURGE_INTERVAL = 3600.0  # seconds between two retention passes of the leader


class EventDispatcher:
    def __init__(
        self,
        outbox: OutboxRepository,
        settings: Settings,
        *,
        publisher: AmqpPublisher | None = None,
        on_positioned: Callable[[], None] | None = None,
        holder: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.clock = clock
        """When webhook deliveries fan out (their first attempt is due then)."""
        self.publisher = publisher
        self.on_positioned = on_positioned
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._renewed_at = float("-inf")
        self._amqp_retry_at = 0.0
        self._amqp_backoff = 0.0
        self._amqp_down_logged = False
        self._amqp_down_since: float | None = None
        self._leader = False
        self._positioned = asyncio.Event()
        self._purge_at = 0.0  # the first pass soon after taking the lead

    # -- one round, in parts ------------------------------------------------------------------

    def hold_lease(self) -> bool:
        """Take or renew the lease (renewed at a third of its life, not every round)."""
        ttl = self.settings.events_lease_seconds
        if time.monotonic() - self._renewed_at < ttl / 3:
            return True
        if leases.acquire(self.outbox.engine, DISPATCHER_LEASE, self.holder, ttl):
            self._renewed_at = time.monotonic()
            return True
        self._renewed_at = float("-inf")
        return False

    def position(self) -> int:
        """Position what has committed (and fan it out to webhooks); returns how many."""
        if not self.outbox.has_unpositioned():
            return 0
        window = timedelta(seconds=self.settings.webhook_retry_window_seconds)

        def fan_out(conn: Connection, events: list[PositionedEvent]) -> None:
            fan_out_in(conn, events, now=self.clock(), retry_window=window)

        positioned = self.outbox.position_new(
            self.holder, limit=POSITION_BATCH, on_positioned=fan_out
        )
        if positioned and self.on_positioned is not None:
            self.on_positioned()
        return len(positioned)

    def purge_expired(self, now: datetime | None = None) -> tuple[int, int]:
        """Retention: delete what is older than ``events_retention_days``; returns (events,
        webhook deliveries) purged.  With a broker, only what it confirmed."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.settings.events_retention_days)
        published = None if self.publisher is None else self.outbox.cursor(AMQP_CURSOR)
        events = self.outbox.purge_before(cutoff, published_up_to=published)
        deliveries = WebhookQueue(self.outbox.engine).purge_finished_before(cutoff)
        if events or deliveries:
            log.info("events.purged", events=events, webhook_deliveries=deliveries)
        return events, deliveries

    async def publish(self) -> int:
        """Publish one batch after the AMQP cursor; returns how many were confirmed."""
        if self.publisher is None or time.monotonic() < self._amqp_retry_at:
            return 0
        cursor = await asyncio.to_thread(self.outbox.cursor, AMQP_CURSOR)
        events = await asyncio.to_thread(self.outbox.after, cursor, PUBLISH_BATCH)
        if not events:
            return 0
        try:
            confirmed = await self.publisher.publish(events)
        except Exception as exc:  # broker down or unreachable: events wait in the outbox
            confirmed = 0
            self._amqp_failed(exc)
        self.publisher.reset()  # nothing else is in flight here
        if confirmed:
            self._amqp_ok()
            last = events[confirmed - 1].position
            assert last is not None
            moved = await asyncio.to_thread(self.outbox.advance_cursor, AMQP_CURSOR, cursor, last)
            if not moved:
                raise LeaseLost("the AMQP cursor moved under this dispatcher")
        elif events and self._amqp_backoff == 0.0:
            self._amqp_failed(RuntimeError("the broker confirmed none of the batch"))
        return confirmed

    def _amqp_failed(self, exc: BaseException) -> None:
        self._amqp_backoff = min(max(self._amqp_backoff * 2, 0.25), 5.0)
        self._amqp_retry_at = time.monotonic() + self._amqp_backoff
        if self._amqp_down_since is None:
            self._amqp_down_since = time.monotonic()
        if not self._amqp_down_logged:
            log.error("events.amqp_unavailable", error=repr(exc), retry_in=self._amqp_backoff)
            self._amqp_down_logged = True

    def _amqp_ok(self) -> None:
        if self._amqp_down_logged:
            log.info("events.amqp_back")
        self._amqp_backoff, self._amqp_down_logged = 0.0, False
        self._amqp_down_since = None

    def amqp_unreachable_seconds(self) -> float | None:
        """How long this dispatcher, while it leads, has had events for RabbitMQ that the
        broker would not confirm (down, restarting, unreachable); None while it confirms."""
        since = self._amqp_down_since
        if since is None or not self._leader:
            return None
        return time.monotonic() - since

    # -- the loops ------------------------------------------------------------------------------

    async def run(self, stop: threading.Event) -> None:
        """Position every poll interval, and publish (its own task) while this process holds
        the lease, until ``stop``.  Never dies of an outage: database or broker faults are
        logged and retried."""
        poll = self.settings.events_poll_interval_ms / 1000
        idle_poll = self.settings.events_idle_poll_interval_ms / 1000
        committed = committed_signal(self.outbox.engine)
        last_work = time.monotonic()
        backoff = 0.0
        publishing = None
        self._positioned = asyncio.Event()
        if self.publisher is not None:
            self.publisher.attach()  # this run's event loop may be a restarted one
            publishing = asyncio.create_task(self._publish_loop(stop))
        try:
            while not stop.is_set():
                busy = False
                try:
                    self._leader = await asyncio.to_thread(self.hold_lease)
                    if not self._leader:
                        await asyncio.to_thread(
                            stop.wait, min(self.settings.events_lease_seconds / 3, 1.0)
                        )
                        continue
                    committed.clear()  # before looking: a commit after this wakes the wait
                    positioned = await asyncio.to_thread(self.position)
                    if positioned:
                        self._positioned.set()  # the publisher need not wait for its poll
                        last_work = time.monotonic()
                    # a full batch: more is waiting; otherwise let the next batch gather (one
                    # transaction per poll interval at most, however busy: SQLite syncs each)
                    busy = positioned >= POSITION_BATCH
                    backoff = 0.0
                    if not busy and time.monotonic() >= self._purge_at:
                        self._purge_at = time.monotonic() + PURGE_INTERVAL
                        await asyncio.to_thread(self.purge_expired)
                except LeaseLost as exc:
                    log.warning("events.lease_lost", reason=exc.message)
                    self._renewed_at, self._leader = float("-inf"), False
                except Exception as exc:  # the database may be down: wait, never die
                    backoff = min(max(backoff * 2, 0.1), 5.0)
                    log.error("events.dispatch_failed", error=repr(exc), retry_in=backoff)
                    round_failed(exc)
                else:
                    round_ok()
                    await asyncio.to_thread(stop.wait, backoff)
                if busy:
                    continue
                if time.monotonic() - last_work < poll:  # events keep coming: let a batch
                    await asyncio.sleep(poll)  # gather (one transaction per poll at most)
                else:  # a commit in this process wakes it at once; others', at the poll
                    recent = time.monotonic() - last_work < 1.0
                    await asyncio.to_thread(committed.wait, poll if recent else idle_poll)
        finally:
            self._leader = False
            if publishing is not None:
                await publishing
            try:
                leases.release(self.outbox.engine, DISPATCHER_LEASE, self.holder)
            except Exception as exc:  # it expires by itself anyway
                log.warning("events.lease_release_failed", error=repr(exc))

    async def _publish_loop(self, stop: threading.Event) -> None:
        """Publish in position order with up to ``PUBLISH_WINDOW`` batches awaiting their
        confirms at once (a quorum queue confirms once its log is synced: waiting for each
        batch before sending the next would add that delay to every event).  The cursor moves
        batch by batch, in order, as confirms arrive; any failure closes the connection and
        starts again from the last confirmed position."""
        assert self.publisher is not None
        poll = self.settings.events_idle_poll_interval_ms / 1000  # positioning wakes it
        in_flight: deque[tuple[list[StoredEvent], asyncio.Task[int]]] = deque()
        confirmed = sent = -1  # unknown until this process leads
        try:
            while not stop.is_set():
                if not self._leader:
                    if in_flight:
                        await self._abandon(in_flight)
                    confirmed = sent = -1
                    await asyncio.sleep(poll)
                    continue
                try:
                    if confirmed < 0:
                        confirmed = sent = await asyncio.to_thread(self.outbox.cursor, AMQP_CURSOR)
                    settled, failure = self._settle(in_flight, confirmed)
                    progressed = settled != confirmed
                    if progressed:  # one cursor write for everything settled
                        if not await asyncio.to_thread(
                            self.outbox.advance_cursor, AMQP_CURSOR, confirmed, settled
                        ):
                            raise LeaseLost("the AMQP cursor moved under this dispatcher")
                        confirmed = settled
                        self._amqp_ok()
                    if failure is not None:  # send again from the first unconfirmed
                        await self._abandon(in_flight)
                        sent = confirmed
                        self._amqp_failed(failure)
                    if len(in_flight) < PUBLISH_WINDOW and time.monotonic() >= self._amqp_retry_at:
                        self._positioned.clear()  # before reading: a later set() wakes us
                        events = await asyncio.to_thread(self.outbox.after, sent, PUBLISH_BATCH)
                        if events:
                            task = asyncio.create_task(self.publisher.publish(events))
                            in_flight.append((events, task))
                            sent, progressed = events[-1].position or sent, True
                    if progressed:
                        continue
                    # until the oldest batch is confirmed, new events are positioned, or a poll
                    wake = asyncio.ensure_future(self._positioned.wait())
                    waiting = [wake, *([in_flight[0][1]] if in_flight else [])]
                    await asyncio.wait(waiting, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
                except LeaseLost as exc:
                    log.warning("events.lease_lost", reason=exc.message)
                    await self._abandon(in_flight)
                    self._renewed_at, self._leader = float("-inf"), False
                    confirmed = sent = -1
                except Exception as exc:  # the database may be down: wait, never die
                    log.error("events.publish_failed", error=repr(exc))
                    await self._abandon(in_flight)
                    confirmed = sent = -1
                    await asyncio.sleep(1.0)
            if in_flight and confirmed >= 0:
                await self._settle_at_stop(in_flight, confirmed, stop)
        finally:
            await self._abandon(in_flight)

    async def _settle_at_stop(
        self,
        in_flight: deque[tuple[list[StoredEvent], asyncio.Task[int]]],
        confirmed: int,
        stop: threading.Event,
    ) -> None:
        """Stopping (SIGTERM): wait a little for the confirms of the batches already sent and
        move the cursor past them, so that the next dispatcher does not publish them again
        (abandoned, they would be: at-least-once is for crashes, not for a clean stop)."""
        tasks = [task for _, task in in_flight]
        # within what is left of serve's bound, keeping time to save the cursor
        left = time_left(stop, self.settings.shutdown_timeout_seconds) - 1.0
        await asyncio.wait(tasks, timeout=min(max(left, 0.0), 10.0))
        settled, _ = self._settle(in_flight, confirmed)
        if settled != confirmed:
            try:
                await asyncio.to_thread(self.outbox.advance_cursor, AMQP_CURSOR, confirmed, settled)
            except Exception as exc:  # the next dispatcher publishes them again
                log.warning("events.cursor_not_saved_at_stop", error=repr(exc))

    @staticmethod
    def _settle(
        in_flight: deque[tuple[list[StoredEvent], asyncio.Task[int]]], confirmed: int
    ) -> tuple[int, BaseException | None]:
        """Pop the finished batches at the head, in order: the position confirmed up to, and
        the failure that stopped it (the rest of that batch was not confirmed), if any."""
        while in_flight and in_flight[0][1].done():
            events, task = in_flight.popleft()
            count = 0 if task.exception() else task.result()
            if count:
                confirmed = events[count - 1].position or confirmed
            if count < len(events):
                return confirmed, task.exception() or RuntimeError("not confirmed")
        return confirmed, None

    async def _abandon(self, in_flight: deque[tuple[list[StoredEvent], asyncio.Task[int]]]) -> None:
        """Drop the batches not settled yet (they are sent again from the cursor)."""
        tasks = [task for _, task in in_flight]
        in_flight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert self.publisher is not None
        await self.publisher.close()
        self.publisher.reset()  # nothing is in flight any more: a new connection may start

    async def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Position and publish everything committed so far (tests, tools)."""
        done = 0
        for _ in range(max_rounds):
            if not self.hold_lease():
                raise LeaseLost("another dispatcher holds the lease")
            moved = self.position() + await self.publish()
            if not moved:
                break
            done += moved
        return done
