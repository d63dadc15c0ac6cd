"""The SMS background loops: the sender (claims due messages and submits them through the
operator adapter) and the confirmation clock (``unconfirmed`` after the deadline).

The sender claims like email delivery does (a lease per message, ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), submits a batch concurrently (the SMPP adapter keeps a window of outstanding
PDUs on one bind), then records every outcome in one transaction fenced on the lease.  A
temporary failure (throttled, SMSC unreachable, unbound mid-stream) leaves the message queued
with a backoff: nothing is lost.  The segments the operator took before a failure are recorded
with their operator ids in that same transaction, and the next attempt sends only the others
(same concatenation reference), so no segment is sent twice knowingly; a message still not
taken at the end of its validity is failed (``expired_in_queue``), never sent late.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from sealpost.logging import get_logger
from sealpost.loops import Loop, periodic, round_failed, round_ok
from sealpost.sms.certificates import SmsCertificates
from sealpost.sms.model import Sms
from sealpost.sms.providers import PermanentFailure, SmsProvider, TemporaryFailure
from sealpost.sms.repository import SendOutcome
from sealpost.sms.service import SmsService

log = get_logger(__name__)


class SmsSender:
    """Submits due messages through one operator adapter."""

    def __init__(
        self,
        service: SmsService,
        provider: SmsProvider,
        *,
        concurrency: int = 16,
        batch: int = 200,
        lease_seconds: float = 120.0,
        poll_seconds: float = 0.2,
        wake: threading.Event | None = None,
        name: str = "sms-sender",
    ) -> None:
        self.service = service
        self.provider = provider
        self.concurrency = concurrency
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.wake = wake or threading.Event()
        self.name = name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{id(self):x}"
        self._pool: ThreadPoolExecutor | None = None

    def run_once(self) -> int:
        """Claim one batch, submit it, record the outcomes; returns how many were claimed."""
        repo = self.service.repo
        claimed = repo.claim_due(
            self.owner, limit=self.batch, lease_seconds=self.lease_seconds, now=self.service.clock()
        )
        if not claimed:
            return 0

        history = repo.attempt_history([s.id for s in claimed if s.attempts > 1])
        now = self.service.clock()

        def attempt(sms: Sms) -> SendOutcome:
            earlier = history.get(sms.id, [])
            if now >= self.service.valid_until(sms):  # never send what is no longer wanted
                return self.service.expired(sms, repo.segments(sms.id) if earlier else [])
            try:
                result = self.provider.submit(self.service.outbound(sms, earlier))
            except TemporaryFailure as exc:
                log.info(
                    "sms.deferred",
                    sms_id=sms.id,
                    reason=exc.reason,
                    status=exc.status,
                    taken=sorted(exc.taken),
                )
                return self.service.deferred(sms, exc, self.provider.name)
            except PermanentFailure as exc:
                log.info("sms.refused", sms_id=sms.id, reason=exc.reason, status=exc.status)
                return self.service.refused(sms, self.provider.name, exc)
            except Exception as exc:  # an adapter bug must not lose the message: retry it
                log.error("sms.submit_error", sms_id=sms.id, error=repr(exc))
                return self.service.deferred(sms, TemporaryFailure(repr(exc)))
            return self.service.submitted(sms, result, earlier)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sealpost-sms")
        outcomes = list(self._pool.map(attempt, claimed))
        repo.finish(self.owner, outcomes, self.service.decide)
        return len(claimed)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: submit while there is work, else wait to be woken (or poll)."""
        try:
            while not stop.is_set():
                try:
                    busy = self.run_once()
                except Exception as exc:  # the database is away: try again shortly
                    log.error("sms.round_failed", error=repr(exc))
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


def loops(
    senders: list[SmsSender], service: SmsService, *, confirm_interval_seconds: float
) -> list[Loop]:
    """The senders (when a provider is configured; several overlap one's database round
    trips with another's submissions) and the confirmation clock."""
    found = [Loop(sender.name, sender.run) for sender in senders]
    return [*found, periodic("sms-confirmations", confirm_interval_seconds, service.tick)]


def certificate_loops(certificates: SmsCertificates) -> list[Loop]:
    """The certificate issuer: a certificate for each SMS that became final, once its records
    are sealed (as the communications' issuer does for email)."""
    return [periodic("sms-certificates", 1.0, certificates.issue_due)]
