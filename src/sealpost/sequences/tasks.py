"""The background loops of reminder sequences.

* The **scheduler** leases due steps (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number
  of processes share the work) and sends each through its channel; the send guard in the
  message's own commit makes "never a step after a stop" hold whatever races it.
* The **follower** reads the outbox after its named cursor (``sequences``) and turns other
  domains' events into stops and channel failures: a pickup accepted or rejected, a reply, a
  signed document, a bounce or an undelivered SMS.  Every handling is idempotent (a stop on a
  stopped enrolment is ignored, a failure on a failed step too), so an event handled twice
  after a crash between the handling and the cursor's advance changes nothing more.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sealpost.errors import SealpostError
from sealpost.events.outbox import OutboxRepository, StoredEvent
from sealpost.logging import get_logger
from sealpost.loops import Loop, round_failed, round_ok
from sealpost.sequences.model import (
    OPTED_OUT,
    PICKUP_ACCEPTED,
    PICKUP_REJECTED,
    REPLIED,
    SIGNED,
)
from sealpost.sequences.service import SequenceService

log = get_logger(__name__)

CURSOR = "sequences"

STOPS = {
    "sealpost.communication.accepted_by_recipient": PICKUP_ACCEPTED,
    "sealpost.communication.rejected_by_recipient": PICKUP_REJECTED,
    "sealpost.communication.replied": REPLIED,
    "sealpost.sms.replied": REPLIED,
    "sealpost.sms.opted_out": OPTED_OUT,
}
"""Events about a step's own message that stop its enrolment (matched by message id)."""

FAILURES = frozenset(
    {
        "sealpost.communication.failed",
        "sealpost.communication.expired",
        "sealpost.sms.undelivered",
        "sealpost.sms.failed",
        "sealpost.sms.unconfirmed",
    }
)
"""Events that a step's channel failed: next channel or stop, as the step says."""

EXTERNAL = {"sealpost.signature.completed": ("signature_process", SIGNED)}
"""Events about another resource an enrolment names in ``external_ids``."""


class DueWork(Protocol):
    """Other timed sends the scheduler's round claims and sends the same way (the archive's
    scheduled sends): ``claim`` leases what is due, ``send`` hands one item to its channel
    with a guard in the message's own commit."""

    def claim(self, limit: int) -> Sequence[Any]: ...

    def send(self, item: Any) -> str: ...


class Scheduler:
    def __init__(
        self,
        service: SequenceService,
        *,
        batch: int = 100,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
        wake: threading.Event | None = None,
        also: Sequence[DueWork] = (),
    ) -> None:
        self.service = service
        self.also = tuple(also)
        """Other due work of this round (wired by the composition root): one scheduler, one
        pool, one wake-up for every timed send."""
        self.batch = batch
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.wake = wake or threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def run_once(self) -> int:
        """Claim one batch of due steps (and of each ``also``'s due work) and send them
        (concurrently: the channels' writers commit them in groups); returns how many were
        claimed."""
        claimed: list[tuple[Callable[[Any], str], Any]] = [
            (self.service.send, step) for step in self.service.claim(self.batch)
        ]
        for work in self.also:
            claimed += [(work.send, item) for item in work.claim(self.batch)]
        if not claimed:
            return 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sealpost-seq")
        list(self._pool.map(lambda pair: pair[0](pair[1]), claimed))
        return len(claimed)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    busy = self.run_once()
                except Exception as exc:
                    log.error("sequences.round_failed", error=repr(exc))
                    round_failed(exc)
                    stop.wait(1.0)
                    continue
                round_ok()
                if not busy:
                    self.wake.wait(self.poll_seconds)
                    self.wake.clear()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=True)


class Follower:
    """Follows the outbox (named cursor ``sequences``) for stops and channel failures."""

    def __init__(self, service: SequenceService, outbox: OutboxRepository, batch: int = 500):
        self.service = service
        self.outbox = outbox
        self.batch = batch

    def run_once(self) -> int:
        """Follow until the outbox is read to its end; returns how many events were read."""
        total = 0
        while True:
            read = self._round()
            total += read
            if read < self.batch:
                return total

    def _round(self) -> int:
        return self.outbox.follow(CURSOR, self.batch, self._handle_logged)

    def _handle_logged(self, event: StoredEvent) -> None:
        try:
            self.handle(event)
        except SealpostError as exc:
            log.info("sequences.event_ignored", event_id=event.id, error=exc.message)

    def handle(self, event: StoredEvent) -> None:
        subject_id = event.subject.rsplit("/", 1)[-1]
        if event.type in STOPS or event.type in FAILURES:
            step = self.service.repo.by_message(subject_id)
            if step is None or step.tenant_id != event.tenant_id:
                return
            if event.type in FAILURES:
                data = json.loads(event.payload).get("data", {})
                reasons = data.get("reasons") or []
                why = reasons[0].get("text", event.type) if reasons else event.type
                self.service.step_failed(step.id, event.type.rsplit(".", 1)[-1], str(why))
                return
            self._stop(step.enrolment_id, STOPS[event.type], event)
            return
        external = EXTERNAL.get(event.type)
        if external is not None:
            kind, cause = external
            for enrolment_id in self.service.repo.by_external_id(event.tenant_id, kind, subject_id):
                self._stop(enrolment_id, cause, event)

    def _stop(self, enrolment_id: str, cause: str, event: StoredEvent) -> None:
        with contextlib.suppress(SealpostError):  # already stopped: the first stop stands
            self.service.stop(
                None,
                enrolment_id,
                cause,
                via="event",
                details={"event_id": event.id, "event_type": event.type},
                if_configured=True,
            )


def loops(scheduler: Scheduler, follower: Follower, *, follow_seconds: float = 1.0) -> list[Loop]:
    from sealpost.loops import periodic

    return [
        Loop("sequences-scheduler", scheduler.run),
        periodic("sequences-follower", follow_seconds, follower.run_once),
    ]
