"""Issuing evidence certificates: gather the timeline, render, seal, store, record.

A certificate is issued once a communication reaches a final status (delivered, relayed,
failed) and every record of its timeline is sealed in the ledger, so that every event has its
bundle embedded.  A later event (a bounce after a delivery) makes it due again: version 2 is
issued, names the SHA-256 of version 1 (``supersedes_sha256``) and carries the
CertificateIssued record of version 1 among its events.  Each version is itself an evidence
record (CertificateIssued: version, SHA-256, what it supersedes), so the chain of versions is
in the ledger too.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from cryptography import x509

from sealpost import metrics
from sealpost.certificates.errors import SealError
from sealpost.certificates.manifest import utc_text
from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.sealer import InlineSealer, SealedPdf, Sealer, SealingKeys
from sealpost.certificates.secrets import carries_access_secret
from sealpost.communications.contents import ContentStore
from sealpost.communications.outcomes import DELIVERED, accepted_by
from sealpost.communications.repository import (
    FINAL_STATUSES,
    Communication,
    CommunicationRepository,
    StoredCertificate,
    TimelineEntry,
)
from sealpost.db.blobs import BlobMissing, BlobStorage
from sealpost.deadlines.words import summary as deadline_words
from sealpost.errors import Conflict, NotFound
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import Subject, new_record
from sealpost.ledger.timestamps import TimeStamper
from sealpost.logging import get_logger
from sealpost.pki.keys import SigningIdentity
from sealpost.tenants.repository import TenantRepository

log = get_logger(__name__)


def summarize(entry: TimelineEntry) -> str:
    """One human line for an event, from its record."""
    record = entry.record
    details = record.get("details", {})
    reasons = record.get("reasons", [])
    name = entry.event
    if name == "SubmissionAcceptance":
        how = details.get("via", "?")
        ident = record.get("sender", {}).get("identification", {})
        who = ident.get("username") or ident.get("domain") or ident.get("client_ip") or ""
        return f"Accepted for delivery (via {how}{', ' + who if who else ''})"
    accepted = accepted_by(name, details, record.get("version", 1))
    if accepted is not None:
        remote = details.get("remote", {})
        tls = details.get("tls", {}).get("version") if details.get("tls") else "no TLS"
        server = (
            "The recipient's mail server"
            if accepted == DELIVERED
            else "The relay (smarthost, not the recipient's server)"
        )
        return (
            f"{server} {remote.get('host')} [{remote.get('ip')}] accepted it at "
            f"{_when(entry.event_time)} ({tls}): {details.get('reply')}"
        )
    pickup = _pickup_words(name, details, reasons)
    if pickup is not None:
        return pickup
    if name in ("OpenTracked", "LinkClicked"):
        return _tracking_words(name, details)
    deadline = deadline_words(name, details)
    if deadline is not None:
        return deadline
    if name == "CertificateIssued":
        return (
            f"Evidence certificate version {details.get('version')} issued "
            f"(SHA-256 {details.get('sha256')})"
        )
    if name == "ReplyReceived":
        reply = details.get("reply") or {}
        sender = record.get("sender", {}).get("address")
        kind = "An automatic answer (not a reply)" if reply.get("automatic") else "A reply"
        smtp = details.get("smtp") or {}
        server = f" from the server {smtp['client_ip']}" if smtp.get("client_ip") else ""
        helo = f" (HELO {str(smtp['helo'])[:80]})" if smtp.get("helo") else ""
        # a From (and an envelope sender) is whatever the sending server wrote: say so
        return (
            f"{kind} giving its sender as {sender} reached Sealpost at "
            f"{_when(entry.event_time)}{server}{helo}; that sender address is as the message "
            "states it, not authenticated (Message-ID "
            f"{reply.get('message_id')}, SHA-256 {record.get('content', {}).get('sha256')}); "
            "a new message, kept as received"
        )
    if reasons:
        return "; ".join(r.get("text", "") for r in reasons)
    return name


def _when(moment: datetime) -> str:
    return utc_text(moment).replace("T", " ").replace("Z", " UTC")


def _visitor(details: dict[str, Any]) -> str:
    visitor = details.get("visitor") or {}
    ident = details.get("identification") or {}
    parts = []
    if ident.get("method"):
        proof = f": {ident['proves']}" if ident.get("proves") else ""
        parts.append(f"identified by {ident['method']}{proof} (level {ident.get('level', '?')})")
    if visitor.get("ip"):
        parts.append(f"from {visitor['ip']}")
    if visitor.get("user_agent"):
        parts.append(f"with {str(visitor['user_agent'])[:80]}")
    return f" ({', '.join(parts)})" if parts else ""


def _tracking_words(name: str, details: dict[str, Any]) -> str:
    """An open or a click in plain words: what was fetched, never that someone read it."""
    what = (
        "The tracking image in the HTML part was fetched"
        if name == "OpenTracked"
        else f"Tracked link {details.get('link')} ({details.get('url')}) was followed"
    )
    after = details.get("seconds_after_delivery")
    when = f", {after:g} s after delivery" if isinstance(after, int | float) else ""
    automated = (
        "; likely automated (a scanner or a preloading client)"
        if details.get("likely_automated")
        else ""
    )
    coalesced = details.get("hits_coalesced")
    more = (
        f"; {coalesced} earlier fetches within the minute before were counted, not recorded"
        if isinstance(coalesced, int) and coalesced > 0
        else ""
    )
    return f"{what}{_visitor(details)}{when}{automated}{more}. Not proof of reading"


def _pickup_words(name: str, details: dict[str, Any], reasons: list[Any]) -> str | None:
    """Registered pickup in plain words: what each record shows, and no more (a notice
    delivered is the recipient's server taking the notice, not the person reading it)."""
    seen = _visitor(details)
    method = (details.get("identification") or {}).get("method")
    # An answer the sender set proves nothing against the sender: say who, not "the recipient".
    who = "The person who answered the sender's question" if method == "challenge" else None
    by_sms = details.get("channel") == "sms"
    if name == "ConsignmentNotification":
        what = "A reminder of the notice" if details.get("reminder") else "A notice"
        what += " by SMS" if by_sms else ""
        hidden = "" if details.get("sender_shown", True) else ", without the sender's name"
        return (
            f"{what} was sent to the recipient (without the content{hidden}); the message "
            f"stays available for pickup until {details.get('available_until')}"
        )
    if name == "NotificationDelivered":
        if by_sms:  # the operator's delivery receipt, not the person reading it
            return "The mobile operator reported the notice SMS delivered to the handset"
        return "The recipient's mail server accepted the notice email"
    if name == "ConsignmentNotificationFailure":
        text = "; ".join(r.get("text", "") for r in reasons)
        return f"The notice{' SMS' if by_sms else ''} could not be sent or delivered: {text}"
    if name == "NotificationAccessTracking":
        return f"The link in the notice was opened in a browser{seen}"
    if name == "NotificationForAcceptance":
        return (
            f"{who or 'The recipient'} identified and was asked to accept or reject the "
            f"message{seen}"
        )
    if name == "ConsignmentAcceptance":
        return f"{who or 'The recipient'} accepted the message{seen}"
    if name == "ConsignmentRejection":
        text = "; ".join(r.get("text", "") for r in reasons)
        return f"{who or 'The recipient'} rejected the message{seen}: {text}"
    if name == "ContentHandover":
        shown = who[0].lower() + who[1:] if who else "the identified recipient"
        return f"The message was shown to {shown}{seen}"
    if name == "ContentAccessTracking":
        download = details.get("download") or {}
        return (
            f"{who or 'The recipient'} downloaded {download.get('filename')} "
            f"(SHA-256 {download.get('sha256')}){seen}"
        )
    if name == "AcceptanceRejectionExpiry":
        text = "; ".join(r.get("text", "") for r in reasons)
        return f"The recipient neither accepted nor rejected the message in time: {text}"
    return None


def sender_identification(entry: TimelineEntry | None) -> str:
    if entry is None:
        return "unknown"
    ident = entry.record.get("sender", {}).get("identification", {})
    method = ident.get("method")
    tls = ident.get("tls", {}).get("version") if isinstance(ident.get("tls"), dict) else None
    if method == "smtp-auth":
        return f"SMTP AUTH user {ident.get('username')}" + (f" over {tls}" if tls else "")
    if method == "relay-network":
        return f"trusted relay network, client {ident.get('client_ip')}"
    if method == "dkim":
        return f"valid DKIM signature of {ident.get('domain')} (selector {ident.get('selector')})"
    if method == "api-key":
        return f"API key {ident.get('key_label') or ident.get('tenant')}"
    return str(method or "unknown")


@dataclass(frozen=True)
class _Pending:
    """A certificate gathered, not yet rendered: what :meth:`CertificateService._store` needs."""

    communication: Communication
    data: CertificateData
    reason: str
    events: tuple[CertificateEvent, ...]
    covered: int


@dataclass(frozen=True)
class IssuedCertificate:
    stored: StoredCertificate
    pdf: bytes


class CertificateService:
    def __init__(
        self,
        *,
        repository: CommunicationRepository,
        tenants: TenantRepository,
        ledger: LedgerReader,
        blobs: BlobStorage,
        contents: ContentStore,
        seal: SigningIdentity,
        timestamper: TimeStamper,
        trust_roots: Sequence[x509.Certificate],
        ledger_origin: str,
        hostname: str,
        sealer: Sealer | None = None,
    ) -> None:
        self.repository = repository
        self.tenants = tenants
        self.ledger = ledger
        self.blobs = blobs
        self.contents = contents
        self.seal = seal
        self.timestamper = timestamper
        self.trust_roots = list(trust_roots)
        self.ledger_origin = ledger_origin
        self.hostname = hostname
        self.inline = InlineSealer(SealingKeys(seal, timestamper, self.trust_roots))
        self.sealer: Sealer = sealer or self.inline
        """Where the background issuer renders and seals (worker processes in ``serve``);
        :meth:`issue` (on demand, for one request) renders in the calling thread."""

    def issue(self, communication: Communication) -> IssuedCertificate | None:
        """Issue the next version; None while some record still waits for its seal.  Every
        line logged meanwhile names the communication and its tenant (structlog context)."""
        with structlog.contextvars.bound_contextvars(
            communication_id=communication.id, tenant_id=communication.tenant_id
        ):
            pending = self._prepare(communication)
            issued = None if pending is None else self._store(pending, self._seal(pending))
        if issued is not None:
            metrics.CERTIFICATES_ISSUED.inc()
        return issued

    def _seal(self, pending: _Pending) -> SealedPdf:
        return self._submit(pending, self.inline).result()

    def _submit(self, pending: _Pending, sealer: Sealer) -> Future[SealedPdf]:
        return sealer.submit(pending.data, reason=pending.reason, location=self.hostname)

    def _prepare(self, communication: Communication) -> _Pending | None:
        """Everything the certificate states, read from the database and the ledger; None
        while some record still waits for its seal."""
        as_of = datetime.now(UTC)  # before the reads: every event recorded by then is in them
        fresh = self.repository.get(communication.id)  # the caller's copy may be stale
        if fresh is None:
            return None
        communication = fresh
        timeline = [
            e
            for e in self.repository.timeline(communication.tenant_id, communication.id)
            if e.event != "CertificateIssued" or e.sealed
        ]
        if not all(e.sealed for e in timeline):
            return None
        covered = sum(1 for e in timeline if e.event != "CertificateIssued")
        previous = self.repository.certificates(communication.id)
        version = communication.certificate_version + 1
        events = []
        for entry in timeline:
            try:
                bundle: dict[str, Any] | None = self.ledger.bundle(
                    entry.record_id, communication.tenant_id
                )
            except NotSealedYet:
                return None
            record = entry.record
            events.append(
                CertificateEvent(
                    record_id=entry.record_id,
                    event=entry.event,
                    event_uri=record["event"]["uri"],
                    event_time=entry.event_time,
                    summary=summarize(entry),
                    details=record.get("details", {}),
                    reasons=tuple((r["code"], r["text"]) for r in record.get("reasons", [])),
                    bundle=bundle,
                )
            )
        acceptance = next((e for e in timeline if e.event == "SubmissionAcceptance"), None)
        content = acceptance.record.get("content", {}) if acceptance else {}
        secret = acceptance is not None and carries_access_secret(
            acceptance.record.get("details", {})
        )
        eml = (
            b""
            if secret
            else self.contents.get(
                communication.content_sha256, of=Subject("communication", communication.id)
            )
        )
        data = CertificateData(
            communication_id=communication.id,
            tenant_name=self.tenants.get(communication.tenant_id).name,
            version=version,
            issued_at=as_of,  # the one time (certificates/sealer.py)
            status=communication.status,
            sender=communication.sender,
            sender_identification=sender_identification(acceptance),
            recipient=communication.recipient,
            subject=communication.subject,
            message_id=communication.message_id,
            submitted_at=communication.submitted_at,
            content_sha256=communication.content_sha256,
            content_size=communication.content_size,
            parts=tuple(
                (p["content_type"], p.get("filename"), p["sha256"], p["size"])
                for p in content.get("parts", [])
            ),
            events=tuple(events),
            eml=eml,
            access_secret=secret,
            supersedes_sha256=previous[-1].sha256 if previous else None,
            ledger_origin=self.ledger_origin,
            verify_hint="sealpost verify certificate.pdf --trust root-ca.pem",
        )
        reason = f"Evidence of certified email {communication.id}: {communication.status}" + (
            f" (version {version}, supersedes {previous[-1].sha256[:16]}...)" if previous else ""
        )
        return _Pending(communication, data, reason, tuple(events), covered)

    def _store(self, pending: _Pending, sealed: SealedPdf) -> IssuedCertificate | None:
        """Store the sealed PDF and commit its CertificateIssued record, whose event time is
        the certificate's own ``issued_at`` (one time: the PDF's, the record's, the API's)."""
        communication, data, events = pending.communication, pending.data, pending.events
        version, covered, pdf, now = data.version, pending.covered, sealed.pdf, sealed.issued_at
        digest = self.blobs.put(pdf)
        issued = new_record(
            tenant_id=communication.tenant_id,
            event="CertificateIssued",
            event_time=now,
            subject=Subject("communication", communication.id),
            application_identifier=communication.message_id,
            details={
                "version": version,
                "sha256": digest,
                "size": len(pdf),
                "supersedes_sha256": data.supersedes_sha256,
                "status": communication.status,
                "events": [e.record_id for e in events],
            },
        )
        stored = StoredCertificate(
            communication_id=communication.id,
            version=version,
            sha256=digest,
            size=len(pdf),
            created_at=now,
            record_id=issued.id,
            reason=f"{communication.status}: " + (events[-1].event if events else ""),
        )
        if not self.repository.store_certificate(
            stored,
            issued,
            events_covered=covered,
            status=communication.status,
            updated_at=communication.updated_at,
        ):
            log.info("certificate.raced", communication=communication.id, version=version)
            return None
        log.info("certificate.issued", communication=communication.id, version=version)
        return IssuedCertificate(stored, pdf)

    def issue_due(self, limit: int = 20, *, stop: threading.Event | None = None) -> int:
        """Issue what is due (the background loop's step); returns how many were issued.

        The evidence of each is gathered here, then rendered and sealed by :attr:`sealer`
        (worker processes, all at once), and each is stored as it comes back.  Stops between
        two certificates once ``stop`` is set (a graceful shutdown need not wait for the whole
        round: nothing is leased, the rest stays due)."""
        return self.issue_round(limit, stop=stop)[0]

    def issue_round(
        self, limit: int = 20, *, stop: threading.Event | None = None
    ) -> tuple[int, bool]:
        """:meth:`issue_due`, and whether more may be due now (the round was full and issued
        something): the loop then starts the next round at once instead of sleeping."""
        candidates = self.repository.certificate_candidates(limit)
        submitted: list[tuple[_Pending, Future[SealedPdf]]] = []
        for communication in candidates:
            if stop is not None and stop.is_set():
                break
            try:
                with structlog.contextvars.bound_contextvars(
                    communication_id=communication.id, tenant_id=communication.tenant_id
                ):
                    pending = self._prepare(communication)
                if pending is not None:
                    submitted.append((pending, self._submit(pending, self.sealer)))
            except Exception as exc:  # the database hiccupped: try again next round
                self._failed(communication, exc)
        issued = 0
        crashed: list[_Pending] = []
        for pending, future in submitted:
            try:
                sealed = future.result()
            except BrokenProcessPool:  # a worker died: every certificate of the round fails
                crashed.append(pending)
                continue
            except Exception as exc:  # the TSA may be down: try again next round
                self._failed(pending.communication, exc)
                continue
            issued += self._stored(pending, sealed)
        # one by one, so that a certificate that kills its worker (memory, a crash in a
        # library) fails alone instead of failing every round it is part of
        for pending in crashed:
            if stop is not None and stop.is_set():
                break
            try:
                sealed = self._submit(pending, self.sealer).result()
            except Exception as exc:
                log.error(
                    "certificate.worker_crashed",
                    communication_id=pending.communication.id,
                    tenant_id=pending.communication.tenant_id,
                    error=repr(exc),
                )
                continue
            issued += self._stored(pending, sealed)
        return issued, len(candidates) >= limit and issued > 0

    def _stored(self, pending: _Pending, sealed: SealedPdf) -> int:
        """Store one sealed certificate; 1 if it was stored, 0 if not (logged)."""
        communication = pending.communication
        try:
            with structlog.contextvars.bound_contextvars(
                communication_id=communication.id, tenant_id=communication.tenant_id
            ):
                done = self._store(pending, sealed)
        except Exception as exc:  # the database hiccupped: try again next round
            self._failed(communication, exc)
            return 0
        if done is None:
            return 0
        metrics.CERTIFICATES_ISSUED.inc()
        return 1

    @staticmethod
    def _failed(communication: Communication, exc: Exception) -> None:
        log.warning(
            "certificate.failed",
            communication_id=communication.id,
            tenant_id=communication.tenant_id,
            error=repr(exc),
        )

    def latest(self, communication: Communication, version: int | None = None) -> bytes:
        """The PDF of ``version`` (default the latest), issuing it first if it is due."""
        if (
            version is None
            and communication.certificate_due
            and (communication.status in FINAL_STATUSES)
        ):
            try:
                issued = self.issue(communication)
            except SealError as exc:  # TSA down: the latest sealed version still stands
                log.warning("certificate.on_demand_failed", error=exc.message)
                issued = None
            if issued is not None:
                return issued.pdf
        stored = self.repository.certificates(communication.id)
        if version is not None:
            stored = [c for c in stored if c.version == version]
            if not stored:
                raise NotFound(f"no certificate version {version} for {communication.id}")
        if not stored:
            raise Conflict(
                f"no certificate yet: communication {communication.id} is {communication.status}"
                "; one is issued when delivery succeeds or finally fails"
            )
        try:
            return self.blobs.get(stored[-1].sha256)
        except NotFound:
            raise BlobMissing(
                "communication", communication.id, stored[-1].sha256, "certificate PDF"
            ) from None

    def supersession(self, pdf_sha256: str) -> tuple[StoredCertificate, StoredCertificate] | None:
        """(this, latest) when the certificate with this digest has a newer version."""
        this = self.repository.certificate_by_sha256(pdf_sha256)
        if this is None:
            return None
        latest = self.repository.certificates(this.communication_id)[-1]
        return (this, latest) if latest.version > this.version else None


def pdf_digest(pdf: bytes) -> str:
    return hashlib.sha256(pdf).hexdigest()
