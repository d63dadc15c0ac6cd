"""The delivery worker: takes due communications and hands them to the recipient's server.

Each attempt is evidence.  A plain mail server is not a registered delivery service, so its
``250`` after DATA is ETSI EN 319 522-3 group F, RelayToNonERDS, whether it is the
recipient's MX (or a configured route to it) or a smarthost (``details.remote.kind`` says
which; see ``docs/evidence-format.md`` for the reasoning), recorded with the remote host, IP,
the full reply, the remote queue id when it gives one, and the TLS version, cipher and peer
certificate SHA-256; a ``4xx`` or a connection failure is RelayToNonERDSFailure (with
``details.temporary``) and the message is retried with exponential backoff; a ``5xx`` is
NonDelivery, Sealpost's final verdict.  Undelivered messages get a DelayWarning
at 12 h and NonDelivery at 24 h (the Italian PEC rules, configurable).

Work is claimed (see ``communications.repository``): N workers never deliver the same attempt, and
a worker killed mid-delivery leaves a lease that expires — or, on the same host, is freed at
the next start — so the message is retried, never lost.  SMTP gives no exactly-once: a
message whose DATA was accepted just before a kill is delivered again, with the same
Message-ID, so the recipient can deduplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib
import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from sealpost import metrics
from sealpost.communications.contents import ContentStore
from sealpost.communications.email.addresses import AddressError, domain_of
from sealpost.communications.email.copies import DeliveryCopy, delivery_copy
from sealpost.communications.email.dkim import sign_message
from sealpost.communications.email.mime import describe_message
from sealpost.communications.email.routing import (
    MX,
    ROUTE,
    SMARTHOST,
    NextHop,
    Router,
    RoutingError,
)
from sealpost.communications.email.verp import BounceAddresses
from sealpost.communications.repository import (
    DELIVERED,
    FAILED,
    QUEUED,
    RELAYED,
    AttemptOutcome,
    Communication,
    CommunicationRepository,
)
from sealpost.config import Settings
from sealpost.ledger.records import EvidenceRecord, Party, Reason, Subject, new_record
from sealpost.logging import get_logger
from sealpost.loops import round_failed, round_ok, time_left
from sealpost.tenants.senders import SenderRepository

log = get_logger(__name__)

_T = TypeVar("_T")
_QUEUE_ID = re.compile(r"(?:queued as|id=|queued with id|\bid\b)\s*<?([A-Za-z0-9._-]{4,})", re.I)


def _process_space() -> str:
    """Names this boot and PID namespace: a pid means something only within the same one."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "unknown"
    return f"{boot}-{namespace}"


PROCESS_SPACE = _process_space()


def host_prefix() -> str:
    return f"{socket.gethostname()}:"


def owner_name() -> str:
    """Lease owner: host:pid:process-space:nonce, so a dead local process can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}:{PROCESS_SPACE}:{uuid.uuid4().hex[:8]}"


def _owner_alive(owner: str) -> bool:
    """Whether the process named in a lease owner still runs; True when we cannot tell.

    Only an owner of this host *and* this boot and PID namespace is judged by its pid (two
    containers may share a host name and pids); any other waits for its lease to expire.
    """
    parts = owner.split(":")
    if len(parts) < 4 or parts[2] != PROCESS_SPACE or PROCESS_SPACE == "unknown":
        return True
    try:
        pid = int(parts[1])
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class HopResult:
    """What one SMTP conversation with one next hop ended with."""

    hop: NextHop
    code: int | None
    reply: str
    remote_ip: str | None = None
    tls: dict[str, Any] | None = None
    stage: str = "connect"
    connected: bool = False
    answered_at: datetime | None = None
    """When the server answered DATA: the event time of its acceptance or refusal."""

    @property
    def accepted(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600


class DeliveryWorker:
    def __init__(
        self,
        *,
        repository: CommunicationRepository,
        contents: ContentStore,
        senders: SenderRepository,
        settings: Settings,
        return_paths: BounceAddresses,
        router: Router | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.return_paths = return_paths
        self.repository = repository
        self.contents = contents
        self.senders = senders
        self.settings = settings
        self.router = router or Router(settings)
        self.wake = wake or threading.Event()
        self.owner = owner_name()
        self._last_sweep = 0.0
        self.unstarted: set[str] = set()
        """Claimed, its recipient not yet tried: released at a stop, its claim counts no
        attempt (:meth:`CommunicationRepository.release_leases`)."""

    # -- loop -------------------------------------------------------------------------------

    def recover(self) -> int:
        """Free the leases of this host's dead Sealpost processes (after a crash)."""
        freed = self.repository.release_dead_leases(host_prefix(), _owner_alive)
        if freed:
            log.warning("delivery.recovered_leases", count=freed)
        return freed

    async def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop``; database faults are logged and retried, never fatal."""
        running: set[asyncio.Task[str]] = set()
        limit = self.settings.delivery_concurrency
        while not stop.is_set():
            try:
                await self._maybe_sweep()
                free = limit - len(running)
                jobs: list[Communication] = []
                if free > 0:
                    jobs = await asyncio.to_thread(
                        self.repository.claim_due,
                        self.owner,
                        limit=free,
                        lease_seconds=self.settings.delivery_lease_seconds,
                    )
                for job in jobs:
                    self.unstarted.add(job.id)
                    task = asyncio.create_task(self.deliver(job))
                    running.add(task)
                    task.add_done_callback(running.discard)
                round_ok()
                if not jobs:
                    self.wake.clear()
                    await asyncio.to_thread(self.wake.wait, 0.25)
            except Exception as exc:  # the database may be down: wait, never die
                log.error("delivery.loop_error", error=repr(exc))
                round_failed(exc)
                await asyncio.sleep(1.0)
        if running:  # shutting down: finish what is in flight, within the bound
            # within what is left of serve's bound, less the second the cancelled need
            left = time_left(stop, self.settings.shutdown_timeout_seconds) - 1.0
            _, late = await asyncio.wait(running, timeout=max(left, 0.0))
            for task in late:  # past the bound: give it up (its lease expires, or is released)
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
                log.warning("delivery.abandoned_at_shutdown", count=len(late))

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        """Deliver everything due now (tests, ``sealpost demo``); returns attempts made."""
        made = 0
        for _ in range(max_rounds):
            jobs = await asyncio.to_thread(
                self.repository.claim_due,
                self.owner,
                limit=self.settings.delivery_concurrency,
                lease_seconds=self.settings.delivery_lease_seconds,
            )
            if not jobs:
                break
            await asyncio.gather(*(self.deliver(job) for job in jobs))
            made += len(jobs)
        return made

    async def _maybe_sweep(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_sweep < 5.0:
            return
        self._last_sweep = loop_time
        await asyncio.to_thread(self.recover)  # a sibling worker on this host may have died
        await asyncio.to_thread(self.sweep_clocks)

    # -- clocks -----------------------------------------------------------------------------

    def sweep_clocks(self, now: datetime | None = None) -> tuple[int, int]:
        """DelayWarning and expiry (NonDelivery) evidence for messages still undelivered."""
        now = now or datetime.now(UTC)
        warned = expired = 0
        hours_warn = self.settings.delivery_warn_after_seconds / 3600
        for c in self.repository.due_for_warning(now):
            text = f"not delivered after {hours_warn:g} h; still trying" + (
                f"; last reply: {c.last_reply}" if c.last_reply else ""
            )
            record = self._record(c, "DelayWarning", reasons=[Reason("delayed", text)])
            warned += self.repository.mark_warned(c.id, [record])
        hours_expire = self.settings.delivery_expire_after_seconds / 3600
        for c in self.repository.due_for_expiry(now):
            text = f"not delivered within {hours_expire:g} h" + (
                f"; last reply: {c.last_reply}" if c.last_reply else ""
            )
            record = self._record(c, "NonDelivery", reasons=[Reason("expired", text)])
            expired += self.repository.mark_final(
                c.id, FAILED, text, [record], only_if_status=[QUEUED]
            )
        return warned, expired

    # -- one attempt ------------------------------------------------------------------------

    def _record(
        self,
        c: Communication,
        event: str,
        *,
        reasons: Sequence[Reason] = (),
        details: dict[str, Any] | None = None,
        event_time: datetime | None = None,
    ) -> EvidenceRecord:
        return new_record(
            tenant_id=c.tenant_id,
            event=event,
            subject=Subject("communication", c.id),
            event_time=event_time,
            submission_time=c.submitted_at,
            sender=Party(c.sender),
            recipient=Party(c.recipient),
            application_identifier=c.message_id,
            reasons=reasons,
            details=details or {},
        )

    def delivery_copy(self, c: Communication, raw: bytes) -> DeliveryCopy:
        """The stored bytes as transmitted (CRLF, no Bcc), with trace fields and the tenant's
        DKIM signature on top (see :mod:`sealpost.communications.email.copies`)."""
        fields = [
            (
                "Received",
                f"by {self.settings.hostname} (Sealpost) with ESMTP id {c.id} "
                f"for <{c.recipient}>; {format_datetime(c.submitted_at)}",
            ),
            ("X-Sealpost-Communication", c.id),
        ]
        if describe_message(raw).message_id is None:
            fields.append(("Message-ID", c.message_id))
        return delivery_copy(raw, fields, self._signer(c))

    def _signer(self, c: Communication) -> Callable[[bytes], bytes] | None:
        """DKIM signing with the key of the sender's domain, when the tenant registered it."""
        try:
            sender_domain = domain_of(c.sender)
        except AddressError:
            return None
        domain = self.senders.find_domain(sender_domain)
        if domain is None or domain.tenant_id != c.tenant_id:
            return None

        def sign(message: bytes) -> bytes:
            return sign_message(
                message,
                domain=domain.domain,
                selector=domain.dkim_selector,
                private_key_pem=domain.dkim_private_key,
            )

        return sign

    async def deliver(self, c: Communication) -> str:
        """One attempt; returns the new status.  Never raises: failures become evidence.
        Every line it logs names the communication and its tenant (structlog context)."""
        with structlog.contextvars.bound_contextvars(communication_id=c.id, tenant_id=c.tenant_id):
            status = await self._attempt(c)
        self.unstarted.discard(c.id)  # not when cancelled first: then it never started
        return status

    async def _attempt(self, c: Communication) -> str:
        """:meth:`deliver`'s attempt.

        A database outage is no attempt and loses no outcome: reading the message waits it
        out (no evidence may say the recipient was tried), and so does writing what the
        recipient answered (a fact; forgotten, the message would stay leased to this live
        process for minutes, then be delivered again), each while the lease lasts."""
        started = datetime.now(UTC)
        give_up = started + timedelta(seconds=self.settings.delivery_lease_seconds)
        copy: DeliveryCopy | None = None
        try:
            stored = c.tracked_sha256 or c.content_sha256  # open and click tracking's copy
            raw = await self._through_outages(
                c, give_up, partial(self.contents.get, of=Subject("communication", c.id)), stored
            )
            copy = await self._through_outages(c, give_up, self.delivery_copy, c, raw)
            # never outlive the lease: past it another worker may take the message over
            limit = (give_up - datetime.now(UTC)).total_seconds() * 0.8
            self.unstarted.discard(c.id)  # the recipient is tried: the attempt counts
            result = await asyncio.wait_for(self._send(c, copy.data), timeout=max(limit, 0.0))
        except TimeoutError:
            log.warning("delivery.attempt_too_long", communication=c.id)
            result = HopResult(
                NextHop("(timeout)", 0, MX), None, "the attempt took longer than its lease"
            )
        except Exception as exc:  # a bug or a local fault: retry later, keep the evidence
            log.error("delivery.error", communication=c.id, error=repr(exc))
            result = HopResult(NextHop("(local)", 0, MX), None, f"local error: {exc!r}")
            copy = None
        finished = datetime.now(UTC)
        try:
            return await self._through_outages(
                c, give_up, self._conclude, c, result, started, copy, finished
            )
        except DBAPIError as exc:  # down for the whole lease: the next worker tries again
            log.error("delivery.outcome_lost", communication=c.id, error=repr(exc))
            return QUEUED

    async def _through_outages(
        self, c: Communication, give_up: datetime, call: Callable[..., _T], *args: Any
    ) -> _T:
        """``call(*args)`` in a thread, again while the database is unreachable and the lease
        lasts (every 0.25 s doubling to 5 s), then its error; any other database error (a
        refused statement) at once.  Safe to repeat: reads, and
        ``finish_attempt``, fenced on the lease (after a commit whose reply was lost the
        next try writes nothing; past the lease another worker may have taken over)."""
        delay = 0.25
        while True:
            try:
                return await asyncio.to_thread(call, *args)
            except DBAPIError as exc:
                outage = exc.connection_invalidated or isinstance(
                    exc, OperationalError | InterfaceError
                )
                if not outage or datetime.now(UTC) + timedelta(seconds=delay) >= give_up:
                    raise  # a refused statement is no outage: waiting would not change it
                log.warning(
                    "delivery.database_unavailable",
                    communication=c.id,
                    error=repr(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send(self, c: Communication, data: bytes) -> HopResult:
        try:
            hops = await self.router.next_hops(domain_of(c.recipient))
        except AddressError as exc:
            return HopResult(NextHop("(none)", 0, MX), 553, f"553 5.1.3 {exc.message}")
        except RoutingError as exc:
            code = 550 if exc.permanent else None
            text = ("550 5.1.2 " if exc.permanent else "") + exc.message
            return HopResult(NextHop("(dns)", 0, MX), code, text, stage="route")
        result: HopResult | None = None
        for hop in hops:
            result = await self._try_hop(hop, c, data)
            if result.connected:
                break  # a server answered: its word is final for this attempt
        assert result is not None
        return result

    def _client_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.delivery_verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _try_hop(self, hop: NextHop, c: Communication, data: bytes) -> HopResult:
        result = HopResult(hop, None, "")
        client = aiosmtplib.SMTP(
            hostname=hop.host,
            port=hop.port,
            local_hostname=self.settings.hostname,
            timeout=self.settings.delivery_timeout_seconds,
            start_tls=False,
            validate_certs=self.settings.delivery_verify_tls,
        )
        try:
            await client.connect()
            result.connected = True
            peer = client.get_transport_info("peername")
            result.remote_ip = str(peer[0]) if peer else None
            result.stage = "ehlo"
            await client.ehlo()
            if client.supports_extension("starttls"):
                result.stage = "starttls"
                await client.starttls(tls_context=self._client_tls())
                result.tls = _tls_info(client)
            elif self.settings.delivery_require_tls:
                result.code, result.reply = None, "TLS required but the server offers no STARTTLS"
                return result
            options = []
            if any(b > 127 for b in data) and client.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
            if not (c.recipient + c.sender).isascii() and client.supports_extension("smtputf8"):
                options.append("SMTPUTF8")
            result.stage = "mail"
            await client.mail(self.return_paths.address(c.id), options=options)
            result.stage = "rcpt"
            await client.rcpt(c.recipient)
            result.stage = "data"
            response = await client.data(data)
            result.answered_at = datetime.now(UTC)  # the moment of consignment, not QUIT's
            result.code, result.reply = response.code, _reply(response.code, response.message)
        except aiosmtplib.SMTPResponseException as exc:
            result.answered_at = datetime.now(UTC)
            result.code, result.reply = exc.code, _reply(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            result.code = None
            result.reply = f"{type(exc).__name__} at {result.stage}: {exc}"
        finally:
            try:
                if client.is_connected:
                    await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
        return result

    def _conclude(
        self,
        c: Communication,
        result: HopResult,
        started: datetime,
        copy: DeliveryCopy | None,
        finished: datetime | None = None,
    ) -> str:
        now = finished or datetime.now(UTC)
        hop = result.hop
        details: dict[str, Any] = {
            "attempt": c.attempts,
            "remote": {
                "host": hop.host,
                "ip": result.remote_ip,
                "port": hop.port,
                "kind": hop.kind,
            },
            "reply": result.reply,
            "stage": result.stage,
            "envelope_from": self.return_paths.address(c.id),
        }
        if result.tls:
            details["tls"] = result.tls
        if copy is not None and result.stage == "data":  # the copy was offered in DATA
            details.update(copy.evidence(c.content_sha256))
            if c.tracked_sha256 is not None:
                details["delivered_changes"]["tracked_sha256"] = c.tracked_sha256
        reasons: list[Reason] = []
        next_attempt: datetime | None = None
        if result.accepted:
            queue_id = _QUEUE_ID.search(result.reply)
            if queue_id:
                details["queue_id"] = queue_id.group(1)
            event = "RelayToNonERDS"
            status = RELAYED if hop.kind == SMARTHOST else DELIVERED
            outcome = status
        elif result.permanent:
            event, status, outcome = "NonDelivery", FAILED, "failed"
            reasons.append(Reason(f"smtp-{result.code}", result.reply))
        else:
            backoff = min(
                self.settings.delivery_retry_initial_seconds * 2 ** max(c.attempts - 1, 0),
                self.settings.delivery_retry_max_seconds,
            ) * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not security
            next_attempt = min(now + timedelta(seconds=backoff), c.expires_at)
            code = f"smtp-{result.code}" if result.code else "connection"
            reasons.append(Reason(code, result.reply or "no answer"))
            details["temporary"] = True
            details["next_attempt_at"] = next_attempt.isoformat()
            event, status, outcome = "RelayToNonERDSFailure", QUEUED, "deferred"
        record = self._record(
            c, event, reasons=reasons, details=details, event_time=result.answered_at or now
        )
        records = [record]
        if status == QUEUED and now >= c.expires_at:
            hours = self.settings.delivery_expire_after_seconds / 3600
            text = f"not delivered within {hours:g} h; last reply: {result.reply}"
            records.append(self._record(c, "NonDelivery", reasons=[Reason("expired", text)]))
            status, next_attempt = FAILED, None
        attempt = AttemptOutcome(
            number=c.attempts,
            started_at=started,
            finished_at=now,
            outcome=outcome,
            reply_code=result.code,
            reply_text=result.reply,
            remote_host=hop.host,
            remote_ip=result.remote_ip,
            details=details,
            status=status,
            next_attempt_at=next_attempt,
        )
        kept = self.repository.finish_attempt(
            self.owner,
            c,
            attempt,
            records,
            attempt_record_id=record.id,
            attempt_id=str(uuid.uuid4()),
        )
        if not kept:
            log.warning("delivery.lease_lost", communication=c.id)
            return QUEUED
        metrics.DELIVERY_ATTEMPTS.labels(outcome).inc()
        log.info(
            "delivery.attempt",
            communication=c.id,
            recipient=c.recipient,
            outcome=outcome,
            reply=result.reply,
            host=hop.host,
        )
        return status


def _reply(code: int, message: str) -> str:
    """The server's reply as text any record or column can hold: aiosmtplib keeps bytes that
    are not UTF-8 as lone surrogates, written here as ``\\xNN`` (the bytes stay readable)."""
    text = f"{code} {message}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _tls_info(client: aiosmtplib.SMTP) -> dict[str, Any] | None:
    ssl_object = client.get_transport_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    peer = ssl_object.getpeercert(binary_form=True)
    return {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_certificate_sha256": hashlib.sha256(peer).hexdigest() if peer else None,
    }


__all__ = ["ROUTE", "DeliveryWorker"]
