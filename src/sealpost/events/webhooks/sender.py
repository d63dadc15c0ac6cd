"""The webhook sender: claims due deliveries, POSTs the signed CloudEvent, logs every attempt.

Each request is ``POST <endpoint url>`` with the CloudEvent as body
(``Content-Type: application/cloudevents+json``) and the Standard Webhooks headers
(``events.signing``).  A 2xx answer within the timeout delivers; anything else (another status,
a timeout, a refused connection) is retried with exponential backoff and jitter until the
retry window (24 h by default) is over, the last attempt at its very end.  Redirects are not
followed.  Deliveries to one endpoint keep per-subject order
(``events.webhooks.queue``); several subjects go in parallel, at most
``webhook_concurrency_per_endpoint`` at a time per endpoint.

Endpoints resolving to loopback, private or link-local addresses are refused unless
``SEALPOST_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is set: a tenant must not reach into the operator's
own network through Sealpost.

The client is aiohttp rather than httpx: measured on this sender's pattern (keep-alive POSTs,
ten at a time to one endpoint), httpx spent ~1.8 ms of CPU per request in its connection
pool's bookkeeping, aiohttp ~0.2 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import socket
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

import sealpost
from sealpost.config import Settings
from sealpost.events.cloudevents import CONTENT_TYPE
from sealpost.events.webhooks.deliveries import (
    AttemptResult,
    ClaimedWebhookDelivery,
    Clock,
    Outcome,
    utc_now,
)
from sealpost.events.webhooks.headers import webhook_headers
from sealpost.events.webhooks.queue import WebhookQueue
from sealpost.logging import get_logger
from sealpost.loops import round_failed, round_ok

log = get_logger(__name__)

RESPONSE_BODY_LOGGED = 1024
USER_AGENT = f"Sealpost-Webhooks/{sealpost.__version__}"


def next_attempt_at(
    attempts: int,
    now: datetime,
    deadline: datetime,
    *,
    initial_seconds: float,
    max_seconds: float,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after ``attempts`` failed attempts; None when the window is over.

    Exponential (initial × 2^(n-1), capped) with "equal jitter" (half fixed, half random), so
    that endpoints coming back are not hit by every sender at once.  A retry that would fall
    after the deadline happens at the deadline instead: the last attempt is at the window's end.
    """
    if now >= deadline:
        return None
    delay = min(initial_seconds * 2 ** max(attempts - 1, 0), max_seconds)
    delay = delay / 2 + (rng or random).uniform(0, delay / 2)
    return min(now + timedelta(seconds=delay), deadline)


class DestinationRefused(OSError):
    """The endpoint resolves to an address webhooks may not reach."""


def refuse_private(host: str, address: str) -> None:
    ip = ipaddress.ip_address(address)
    if not ip.is_global:
        raise DestinationRefused(
            f"{host} is {ip}, not a public address "
            "(SEALPOST_WEBHOOK_ALLOW_PRIVATE_NETWORKS allows it)"
        )


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp's default, then refuses non-public addresses: the check applies
    to the very address connected to, so DNS rebinding cannot slip past it."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for result in found:
            refuse_private(host, result["host"])
        return found

    async def close(self) -> None:
        await self._resolver.close()


def http_session(settings: Settings) -> aiohttp.ClientSession:
    """The sender's HTTP client: keep-alive, no redirects, one timeout per request."""
    connector = aiohttp.TCPConnector(
        limit=settings.webhook_concurrency,
        limit_per_host=settings.webhook_concurrency_per_endpoint,
        resolver=None if settings.webhook_allow_private_networks else PublicResolver(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds),
        headers={"user-agent": USER_AGENT},
        skip_auto_headers=("content-type",),
    )


async def post_event(
    session: aiohttp.ClientSession,
    url: str,
    event_id: str,
    payload: str,
    secrets: list[str],
    *,
    allow_private: bool,
    clock: Clock = utc_now,
) -> AttemptResult:
    """One signed POST; never raises: every outcome is an :class:`AttemptResult` (started at
    ``clock()``)."""
    started = clock()
    timer = time.monotonic()
    status: int | None = None
    body: str | None = None
    error: str | None = None
    try:
        host = urlsplit(url).hostname or ""
        if not allow_private and _is_ip(host):
            refuse_private(host, host)  # a literal address is never resolved: check it here
        headers = {
            "content-type": f"{CONTENT_TYPE}; charset=utf-8",
            **webhook_headers(event_id, payload, secrets),
        }
        async with session.post(
            url, data=payload.encode(), headers=headers, allow_redirects=False
        ) as reply:
            status = reply.status
            received = await reply.content.read(RESPONSE_BODY_LOGGED)
            body = received.decode("utf-8", "replace")
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except DestinationRefused as exc:
        error = f"refused: {exc}"
    except TimeoutError:
        error = f"timed out after {session.timeout.total:g} s"
    except aiohttp.ClientConnectorError as exc:  # the resolver's refusal arrives wrapped
        refused = isinstance(exc.os_error, DestinationRefused)
        error = f"refused: {exc.os_error}" if refused else f"{type(exc).__name__}: {exc}"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}"
    duration = int((time.monotonic() - timer) * 1000)
    return AttemptResult(started, duration, status, body, error)


SUBJECT_LOG_KEYS = {"communications": "communication_id", "sms": "communication_id"}
"""Subject collections whose id is logged as ``communication_id`` (an email or an SMS)."""


def log_context(delivery: ClaimedWebhookDelivery) -> dict[str, str]:
    """What a log line about this delivery carries: its tenant, event and subject, and the
    communication id when the event is about a communication (the CloudEvents ``subject``
    is ``<collection>/<id>``), so one communication's lines can be found together."""
    context = {"tenant_id": delivery.tenant_id, "event_id": delivery.event_id}
    try:
        subject = json.loads(delivery.payload).get("subject")
    except (ValueError, AttributeError):
        return context
    if isinstance(subject, str):
        context["subject"] = subject
        collection, _, subject_id = subject.partition("/")
        key = SUBJECT_LOG_KEYS.get(collection)
        if key is not None and subject_id:
            context[key] = subject_id
    return context


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class WebhookSender:
    def __init__(
        self,
        queue: WebhookQueue,
        settings: Settings,
        *,
        wake: threading.Event | None = None,
        owner: str | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.clock = clock
        """When attempts start and retries fall due (the queue's own clock, in practice)."""
        self.wake = wake or threading.Event()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._per_endpoint: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.settings.webhook_concurrency_per_endpoint)
        )

    async def attempt(
        self, session: aiohttp.ClientSession, delivery: ClaimedWebhookDelivery
    ) -> Outcome:
        """One attempt of one delivery (not yet recorded: see :meth:`record`)."""
        async with self._per_endpoint[delivery.endpoint_id]:
            result = await post_event(
                session,
                delivery.url,
                delivery.event_id,
                delivery.payload,
                delivery.secrets.valid(datetime.now(UTC)),
                allow_private=self.settings.webhook_allow_private_networks,
                clock=self.clock,
            )
        log.info(
            "webhooks.attempt",
            endpoint=delivery.endpoint_id,
            status=result.status_code,
            success=result.success,
            **log_context(delivery),
        )
        retry = None
        if not result.success:
            retry = next_attempt_at(
                delivery.attempts + 1,
                self.clock(),
                delivery.deadline_at,
                initial_seconds=self.settings.webhook_retry_initial_seconds,
                max_seconds=self.settings.webhook_retry_max_seconds,
            )
        return Outcome(delivery, result, retry)

    async def record(self, outcomes: list[Outcome]) -> int:
        """Commit a batch of outcomes in one transaction; returns how many were kept."""
        kept = await asyncio.to_thread(
            self.queue.finish,
            self.owner,
            outcomes,
            retry_window=timedelta(seconds=self.settings.webhook_retry_window_seconds),
        )
        for o in outcomes:
            if not o.result.success:
                log.warning(
                    "webhooks.attempt_failed",
                    endpoint=o.delivery.endpoint_id,
                    **log_context(o.delivery),
                    status=o.result.status_code,
                    error=o.result.error,
                    retry_at=o.next_attempt_at.isoformat() if o.next_attempt_at else None,
                )
        if kept < len(outcomes):
            log.warning("webhooks.lease_lost", lost=len(outcomes) - kept)
        return kept

    async def _recorder(self, outcomes: asyncio.Queue[Outcome | None]) -> None:
        """Group commit: whatever finished while the previous batch was committing goes next.
        Ends at ``None``, after recording everything before it."""
        done = False
        linger = min(self.settings.events_poll_interval_ms / 2000, 0.01)
        while not done:
            batch: list[Outcome] = []
            item = await outcomes.get()
            await asyncio.sleep(linger)  # let the requests in flight join this commit
            while True:
                if item is None:
                    done = True
                else:
                    batch.append(item)
                if outcomes.empty():
                    break
                item = outcomes.get_nowait()
            if not batch:
                continue
            try:
                await self.record(batch)
            except Exception as exc:  # the database is down: the leases expire, sent again
                log.error("webhooks.record_failed", error=repr(exc), outcomes=len(batch))
                await asyncio.sleep(1.0)

    async def run(self, stop: threading.Event) -> None:
        """Claim and send until ``stop``; never dies of a database outage."""
        self._per_endpoint.clear()  # semaphores of an earlier (restarted) event loop
        s = self.settings
        poll, idle_poll = s.events_poll_interval_ms / 1000, s.events_idle_poll_interval_ms / 1000
        last_work = time.monotonic()
        outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()
        recorder = asyncio.create_task(self._recorder(outcomes))

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slot_freed.set()

        async def attempt(session: aiohttp.ClientSession, delivery: ClaimedWebhookDelivery) -> None:
            outcomes.put_nowait(await self.attempt(session, delivery))

        async with http_session(self.settings) as session:
            while not stop.is_set():
                try:
                    free = s.webhook_concurrency - len(running)
                    claimed = []
                    if free > 0 and await asyncio.to_thread(self.queue.has_due):
                        claimed = await asyncio.to_thread(
                            self.queue.claim_due,
                            self.owner,
                            limit=free,
                            lease_seconds=s.webhook_lease_seconds,
                        )
                    for delivery in claimed:
                        task = asyncio.create_task(attempt(session, delivery))
                        running.add(task)
                        task.add_done_callback(finished)
                    if claimed or running:
                        last_work = time.monotonic()
                    if free <= 0 or len(claimed) == free:  # a backlog: go on as slots free
                        slot_freed.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(slot_freed.wait(), poll)
                    else:  # no backlog: wait for new work
                        self.wake.clear()
                        recent = time.monotonic() - last_work < 1.0
                        await asyncio.to_thread(self.wake.wait, poll if recent else idle_poll)
                except Exception as exc:  # the database may be down: wait, never die
                    log.error("webhooks.loop_error", error=repr(exc))
                    round_failed(exc)
                    await asyncio.sleep(1.0)
                else:
                    round_ok()
            if running:
                await asyncio.wait(running, timeout=s.webhook_timeout_seconds + 5)
        outcomes.put_nowait(None)  # what finished is recorded before stopping
        await recorder

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Send everything due now, once each (tests, tools); returns attempts made."""
        made = 0
        async with http_session(self.settings) as session:
            for _ in range(max_rounds):
                claimed = await asyncio.to_thread(
                    self.queue.claim_due,
                    self.owner,
                    limit=self.settings.webhook_concurrency,
                    lease_seconds=self.settings.webhook_lease_seconds,
                )
                if not claimed:
                    break
                await self.record(
                    list(await asyncio.gather(*(self.attempt(session, d) for d in claimed)))
                )
                made += len(claimed)
        return made
