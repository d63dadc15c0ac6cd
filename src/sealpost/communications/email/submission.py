"""Accepting a message: the bytes and the SubmissionAcceptance evidence, durably, then 250.

A submission (one SMTP transaction, one API call, one rewritten message) becomes one
*communication* per recipient, each with its own SubmissionAcceptance record, so each has its
own evidence and its own certificate.  Nothing is acknowledged before the raw bytes are
fsync'ed under their SHA-256 and the rows and records are committed; a full disk fails the
submission with :class:`~sealpost.db.full.StorageFull`, nothing of it kept.

Commits are *grouped*: concurrent submissions queue to one writer thread that stores a whole
batch in one transaction, the message bytes included (``communications.contents``), so a batch costs
one database sync however many messages it holds (the way databases and Postfix amortise
their syncs).  Under load a batch holds many messages; alone, a message waits for nothing.
If a batch fails, each submission is retried alone, so one bad submission cannot fail others.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from sealpost import metrics
from sealpost.certificates.secrets import carries_access_secret
from sealpost.communications.contents import ContentStore
from sealpost.communications.email.addresses import AddressError, domain_of
from sealpost.communications.email.copies import acceptance_note
from sealpost.communications.email.mime import (
    MessageFacts,
    describe_message,
    header_section,
    new_message_id,
)
from sealpost.communications.email.refusals import SubmissionRefused, check_content
from sealpost.communications.email.replies import (
    ReplyCapture,
    existing_reply_to,
    with_reply_to,
)
from sealpost.communications.ports import (
    DELIVERY_MODES,
    PICKUP,
    NewPickup,
    PickupDesk,
    PickupRequest,
)
from sealpost.communications.repository import PICKUP as PICKUP_STATUS
from sealpost.communications.repository import QUEUED, CommunicationRepository
from sealpost.communications.tracking.repository import TrackingRepository
from sealpost.communications.tracking.service import Choice, TrackedCopy, TrackingService
from sealpost.config import Settings
from sealpost.db.engine import release_request_connections, write_transaction
from sealpost.db.full import StorageFull, is_storage_full
from sealpost.deadlines.calendars import normalised_code
from sealpost.deadlines.rules import DeadlineRule, check_trigger, parse_header
from sealpost.errors import Conflict, InvalidInput, SealpostError
from sealpost.ledger.records import (
    EvidenceRecord,
    Party,
    Reason,
    Subject,
    new_record,
)
from sealpost.logging import get_logger

log = get_logger(__name__)

MAX_BATCH = 256


@dataclass(frozen=True)
class SubmissionRequest:
    """A message handed to Sealpost, before anything is stored."""

    tenant_id: str
    via: str
    """How it came in: "smtp", "api" or "rewrite"."""
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes
    identification: Mapping[str, Any]
    """How the sender was identified: {"method": "smtp-auth", "username": ...}, ..."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Channel details for the evidence: client IP, HELO, TLS, ..."""
    idempotency_key: str | None = None
    request_sha256: str | None = None
    """Fingerprint of the API request, so a retry with the same key is recognised as such."""
    sender_domains: frozenset[str] = frozenset()
    """The tenant's registered domains: when any, the From address must be in one of them."""
    delivery: str | None = None
    """``direct`` or ``pickup``; None: the ``Sealpost-Delivery`` header, else the tenant's
    default."""
    pickup: PickupRequest | None = None
    """The pickup choices (API body); None: the ``Sealpost-Pickup-*`` headers, or defaults."""
    tracking: bool = True
    """False: never open and click tracking, whatever the tenant chose (Sealpost's own notices,
    codes and invitations); True: the tenant's choice (``PUT /v1/settings/tracking``)."""
    reply_capture: bool | None = None
    """Give each communication its own signed reply address in ``Reply-To`` (beside the
    sender's), so that replies are recorded on it (``ReplyReceived``); None: the tenant's
    setting (``PUT /v1/settings/replies``).  Direct emails from SMTP or the API only: never a
    pickup, a rewritten (DKIM-signed) message or one carrying an access secret."""
    certificate: bool = True
    """False: no certificate is issued by the background loop, only when asked for
    (``GET .../certificate.pdf``): a reminder sequence's plain ``email`` step."""
    guard_in: Callable[[Connection, str], None] | None = None
    """Another domain's check, run by the writer inside the commit transaction, before this
    submission's rows, with its (first) communication id: raising a ``SealpostError`` (before
    writing anything) withdraws this submission alone (its caller gets the error; the batch's
    others commit); whatever else it writes commits with the message.  Reminder sequences use
    it so that a stop and a step's send are one transaction (issue 14)."""


class SenderNotAllowed(SubmissionRefused):
    """The From address is not of the tenant's registered domains (SMTP 550, HTTP 422)."""

    code = "sender_not_allowed"
    title = "This sender may not send for the tenant"
    reason_code = "policy"
    smtp_status = "550 5.7.1"  # RFC 3463 X.7.1: delivery not authorized


class PickupRefused(SubmissionRefused):
    """A pickup choice that cannot be served: an unknown mode, ``sms_otp`` without an SMS
    sender or a phone number, ``challenge`` without an answer (SMTP 550, HTTP 422)."""

    code = "pickup_refused"
    title = "The pickup options cannot be served"
    reason_code = "pickup"
    smtp_status = "550 5.7.0"


class DeadlineRefused(SubmissionRefused):
    """A deadline rule that cannot run: its trigger is not one this delivery records (a
    handover on a direct email), an unknown calendar, a ``Sealpost-Deadline`` header that does
    not parse (SMTP 550, HTTP 422; ``docs/deadlines.md``)."""

    code = "deadline_refused"
    title = "The deadline rule cannot run on this communication"
    reason_code = "deadline"
    smtp_status = "550 5.7.0"


_PICKUP_HEADERS = {
    "identification": "Sealpost-Pickup-Identification",
    "consent": "Sealpost-Pickup-Consent",
    "policy": "Sealpost-Pickup-Policy",
    "phone": "Sealpost-Pickup-Phone",
}
"""Pickup choices over SMTP.  A challenge answer never travels in a header: the header
section is kept with the message, and the answer must be stored only as a hash (API only).
``Sealpost-Pickup-Notice`` (``email``, ``sms`` or ``email, sms``) is read on its own: a list."""


def _delivery_from_headers(raw: bytes) -> tuple[str | None, PickupRequest]:
    """``Sealpost-Delivery`` and ``Sealpost-Pickup-*`` headers, as a mail client sets them."""
    section = header_section(raw)
    if b"sealpost-" not in section.lower():  # the common case: no header of ours, no parse
        return None, PickupRequest()
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(section)
    except Exception:
        return None, PickupRequest()
    delivery = headers.get("Sealpost-Delivery")
    values = {
        key: " ".join(str(headers[name]).split()) or None
        for key, name in _PICKUP_HEADERS.items()
        if headers.get(name) is not None
    }
    mode = " ".join(str(delivery).split()).lower() if delivery is not None else None
    notice = headers.get("Sealpost-Pickup-Notice")  # "email", "sms" or "email, sms"
    channels = None
    if notice is not None:
        channels = tuple(c.strip().lower() for c in str(notice).split(",") if c.strip())
    return mode, PickupRequest(**values, notice=channels)


def _deadline(
    request: SubmissionRequest, pickup_options: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The deadline rule (the API's ``deadline``, else the ``Sealpost-Deadline`` header),
    checked against the resolved delivery; :class:`DeadlineRefused` before anything is
    stored."""
    given = request.details.get("deadline")
    source = "deadline"
    try:
        if given is not None:
            rule = DeadlineRule.from_json(given)
        else:
            header = _header_value(request.raw, "Sealpost-Deadline")
            if header is None:
                return None
            source = "Sealpost-Deadline"
            rule = parse_header(header)
        rule = replace(rule, calendar=normalised_code(rule.calendar))
        evidence = (pickup_options or {}).get("evidence", {})
        basic = str(evidence.get("consignment", "")).endswith("/basic")
        check_trigger(rule, pickup=pickup_options is not None, basic=basic)
    except InvalidInput as exc:
        message = exc.message if source == "deadline" else f"{source}: {exc.message}"
        raise DeadlineRefused(message) from None
    return rule.to_json()


def _header_value(raw: bytes, name: str) -> str | None:
    section = header_section(raw)
    if name.lower().encode() not in section.lower():
        return None
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(section).get(name)
    except Exception:
        return None
    return None if value is None else " ".join(str(value).split())


@dataclass(frozen=True)
class Accepted:
    submission_id: str
    communication_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    message_id: str
    record_ids: tuple[str, ...]
    replayed: bool = False
    """True when an Idempotency-Key matched an earlier submission: nothing new was stored."""


@dataclass
class _Prepared:
    request: SubmissionRequest
    facts: MessageFacts
    accepted: Accepted
    rows: list[dict[str, Any]]
    records: list[EvidenceRecord]
    future: Future[Accepted] = field(default_factory=Future)
    pickups: list[NewPickup] = field(default_factory=list)
    tracked: list[TrackedCopy] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    """The bytes to store: the request's, or one message per communication (its own
    Reply-To) when replies are captured."""


def _sender_party(request: SubmissionRequest, facts: MessageFacts) -> Party:
    identification = {**request.identification, "envelope_from": request.mail_from}
    return Party(facts.from_address or request.mail_from, facts.from_display, identification)


class SubmissionService:
    """Turns submissions into communications; owns the group-commit writer thread."""

    def __init__(
        self,
        engine: Engine,
        contents: ContentStore,
        settings: Settings,
        *,
        on_commit: Callable[[], None] | None = None,
        pickup: PickupDesk | None = None,
        tracking: TrackingService | None = None,
        replies: ReplyCapture | None = None,
    ) -> None:
        self.replies = replies
        """Reply capture (set by the composition root); None: no Reply-To is ever added."""
        self.pickup = pickup
        self.tracking = tracking
        """Open and click tracking (set by the composition root); None: never tracked."""
        """Registered pickup (set by the composition root); None: every message is direct."""
        self.engine = engine
        self.contents = contents
        self.settings = settings
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[_Prepared | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- building ---------------------------------------------------------------------------

    def prepare(self, request: SubmissionRequest) -> _Prepared:
        """Parse and build rows and records (CPU only; runs in the caller's thread)."""
        facts = describe_message(request.raw)
        check_content(request.raw, facts)
        unique: dict[str, str] = {}
        for address in request.recipients:
            unique.setdefault(address.lower(), address)  # one communication per recipient
        request = replace(request, recipients=tuple(unique.values()))
        if request.sender_domains and not _from_allowed(request.raw, facts, request.sender_domains):
            raise SenderNotAllowed(
                f"From must be an address of {', '.join(sorted(request.sender_domains))}"
            )
        message_id = facts.message_id or new_message_id(self.settings.hostname)
        pickup_options = self._pickup_options(request)
        deadline = _deadline(request, pickup_options)
        now = datetime.now(UTC)
        submission_id = str(uuid.uuid4())
        sender = _sender_party(request, facts)
        message_details: dict[str, Any] = {"subject": facts.subject}
        if facts.message_id is None:
            message_details["message_id_added"] = True
        if facts.defects:
            message_details["mime_defects"] = list(facts.defects)
        copies = acceptance_note(request.raw)
        if copies is not None:
            message_details["delivered_copies"] = copies
        delivery: dict[str, Any] = {}
        if pickup_options is not None:
            delivery = {"delivery": {"mode": PICKUP, **pickup_options.get("evidence", {})}}
        secret = carries_access_secret(request.details)
        capture = self._captures(request, pickup_options is None, secret)
        keep = (existing_reply_to(request.raw) or facts.from_address) if capture else None
        if capture:
            message_details["reply_capture"] = True
            # content is the message with the Reply-To added; the sender's own bytes differ
            message_details["submitted_sha256"] = hashlib.sha256(request.raw).hexdigest()
        tracking = self._tracking_choice(request, facts, pickup_options is not None, secret)
        rows, records, ids, raws, tracked_copies = [], [], [], [], []
        for recipient in request.recipients:
            communication_id = str(uuid.uuid4())
            raw, message_facts = request.raw, facts
            if capture:
                assert self.replies is not None
                address = self.replies.addresses.address(communication_id)
                raw = with_reply_to(request.raw, keep, address)
                message_facts = describe_message(raw)
            raws.append(raw)
            content = message_facts.content
            if secret:
                # A code's text part would give the code away from its SHA-256 (a million
                # tries); the whole message's digest stays (its Message-ID is random).
                content = replace(content, parts=())
            tracked = None
            if tracking is not None:
                # Made from the bytes this recipient's acceptance seals (with its own reply
                # address when replies are captured).
                assert self.tracking is not None
                tracked = self.tracking.tracked_copy(
                    request.tenant_id, communication_id, raw, tracking
                )
            if tracked is not None:
                tracked_copies.append(tracked)
            record = new_record(
                tenant_id=request.tenant_id,
                event="SubmissionAcceptance",
                subject=Subject("communication", communication_id),
                event_time=now,
                submission_time=now,
                sender=sender,
                recipient=Party(recipient),
                application_identifier=message_id,
                content=content,
                details={
                    "via": request.via,
                    "submission_id": submission_id,
                    "recipients": len(request.recipients),
                    **dict(request.details),
                    **({"deadline": deadline} if deadline is not None else {}),
                    "message": message_details,
                    **delivery,
                    **({"tracking": tracked.evidence} if tracked is not None else {}),
                },
            )
            rows.append(
                {
                    "id": communication_id,
                    "tenant_id": request.tenant_id,
                    "submission_id": submission_id,
                    "channel": "email",
                    "via": request.via,
                    "status": QUEUED if pickup_options is None else PICKUP_STATUS,
                    "sender": sender.address[:320],
                    "recipient": recipient[:320],
                    "subject": facts.subject,
                    "message_id": message_id,
                    "content_sha256": content.sha256,
                    "content_size": content.size,
                    "submitted_at": now,
                    "updated_at": now,
                    "next_attempt_at": now if pickup_options is None else None,
                    "attempts": 0,
                    "warn_at": now + timedelta(seconds=self.settings.delivery_warn_after_seconds),
                    "expires_at": now
                    + timedelta(seconds=self.settings.delivery_expire_after_seconds),
                    "delay_warned": 0,
                    "idempotency_key": request.idempotency_key,
                    "request_sha256": request.request_sha256,
                    "certificate_version": 0,
                    "certificate_due": 0,
                    "tracked_sha256": tracked.sha256 if tracked is not None else None,
                    "certificate_auto": 1 if request.certificate else 0,
                }
            )
            records.append(record)
            ids.append(communication_id)
        accepted = Accepted(
            submission_id=submission_id,
            communication_ids=tuple(ids),
            recipients=request.recipients,
            message_id=message_id,
            record_ids=tuple(r.id for r in records),
        )
        prepared = _Prepared(
            request, facts, accepted, rows, records, tracked=tracked_copies, raws=raws
        )
        if pickup_options is not None:
            prepared.pickups = [
                NewPickup(
                    tenant_id=request.tenant_id,
                    communication_id=communication_id,
                    recipient=recipient[:320],
                    sender=sender.address[:320],
                    sender_name=facts.from_display,
                    subject=facts.subject,
                    content_sha256=facts.content.sha256,
                    options=pickup_options,
                    now=now,
                )
                for communication_id, recipient in zip(ids, request.recipients, strict=True)
            ]
        return prepared

    def _tracking_choice(
        self, request: SubmissionRequest, facts: MessageFacts, pickup: bool, secret: bool
    ) -> Choice | None:
        """The tenant's tracking choice when this message may be tracked: a direct email with
        an HTML part, not one of Sealpost's own, not one carrying an access secret, not one
        certified by address rewriting (its own server's DKIM signature must reach the
        recipient intact), submitted over SMTP or the API (a plain-text-only message is never
        rewritten, so its tenant's choice is not read)."""
        if self.tracking is None or not request.tracking or pickup:
            return None
        if request.via not in ("smtp", "api"):
            return None
        if secret or not facts.content.parts:
            return None
        if not any(p.content_type == "text/html" for p in facts.content.parts):
            return None
        choice = self.tracking.choice(request.tenant_id)
        return choice if choice.any else None

    def _captures(self, request: SubmissionRequest, direct: bool, secret: bool) -> bool:
        """Whether this submission's communications get a reply address (see
        :attr:`SubmissionRequest.reply_capture`)."""
        if self.replies is None or not direct or secret or request.via not in ("smtp", "api"):
            return False
        if request.reply_capture is not None:
            return request.reply_capture
        return self.replies.enabled(request.tenant_id)

    def _pickup_options(self, request: SubmissionRequest) -> dict[str, Any] | None:
        """The resolved pickup options, or None for a direct delivery; :class:`PickupRefused`
        for a choice that cannot be served (before anything is stored)."""
        mode, from_headers = _delivery_from_headers(request.raw)
        mode = request.delivery or mode
        if mode is not None and mode not in DELIVERY_MODES:
            raise PickupRefused(f"delivery must be direct or pickup, not {mode[:40]!r}")
        if mode is None and self.pickup is not None:
            mode = self.pickup.default_delivery(request.tenant_id)
        if mode != PICKUP:
            return None
        if self.pickup is None:
            raise PickupRefused("delivery: pickup is not available on this Sealpost")
        try:
            return dict(self.pickup.resolve(request.tenant_id, request.pickup or from_headers))
        except SubmissionRefused:
            raise
        except InvalidInput as exc:
            raise PickupRefused(exc.message) from None

    # -- committing -------------------------------------------------------------------------

    def submit(self, request: SubmissionRequest) -> Future[Accepted]:
        """Queue for the next group commit; the future resolves once durable.

        A refusal (:class:`SubmissionRefused`) raises here, after its SubmissionRejection
        record is committed: if that commit fails, the database error raises instead, and the
        client is told to retry (451 / 503) rather than refused without evidence.
        """
        try:
            prepared = self.prepare(request)
        except SubmissionRefused as exc:
            self.reject(
                tenant_id=request.tenant_id,
                mail_from=request.mail_from,
                recipients=request.recipients,
                identification=request.identification,
                code=exc.reason_code,
                text=exc.smtp_reply() if request.via != "api" else exc.message,
                raw=request.raw,
                details=request.details,
            )
            metrics.REJECTED.labels(request.via).inc()
            raise
        self._ensure_writer()
        self._queue.put(prepared)
        return prepared.future

    def accept(self, request: SubmissionRequest, timeout: float = 60.0) -> Accepted:
        """Submit and wait (the REST API's path).  The request's shared read connection goes
        back to the pool first: the writer needs one of its own meanwhile."""
        release_request_connections()
        return self.submit(request).result(timeout)

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sealpost-submission-writer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Prepared], *, retry: bool = False) -> None:
        try:
            results = self._commit(batch)
        except Exception as exc:
            if len(batch) == 1:
                item = batch[0]
                if isinstance(exc, IntegrityError) and item.request.idempotency_key and not retry:
                    # another process committed the same key first: answer its result
                    self._commit_batch(batch, retry=True)
                    return
                if is_storage_full(exc):  # the operator must free space: say so, plainly
                    log.error("submission.storage_full", error=repr(exc))
                    full = StorageFull("the message could not be stored: storage is full")
                    item.future.set_exception(full)
                    return
                log.error("submission.commit_failed", error=repr(exc))
                item.future.set_exception(exc)
                return
            for item in batch:  # isolate the culprit: one at a time
                self._commit_batch([item])
            return
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if self.on_commit is not None:
            self.on_commit()
        for item, result in zip(batch, results, strict=True):  # after the replies: not before
            if isinstance(result, Accepted) and not result.replayed:
                _accepted(item.request, result)

    def _commit(self, batch: list[_Prepared]) -> list[Accepted | Exception]:
        guarded = any(item.request.guard_in is not None for item in batch)
        if not guarded:  # the common case: large contents as files before the transaction
            self.contents.put_large(_blobs(batch))
        results: list[Accepted | Exception] = []
        with write_transaction(self.engine) as conn:
            decided: list[Accepted | Exception | None] = []  # None: store it
            for item in batch:
                key = item.request.idempotency_key
                if key is not None:
                    earlier = CommunicationRepository.by_idempotency_key_in(
                        conn, item.request.tenant_id, key
                    )
                    if earlier:
                        decided.append(_replay(item, earlier))
                        continue
                guard = item.request.guard_in
                if guard is not None:
                    try:
                        guard(conn, item.accepted.communication_ids[0])
                    except SealpostError as exc:  # withdrawn: this submission alone
                        decided.append(exc)
                        continue
                decided.append(None)
            # the contents of what is stored only: a withdrawn message leaves nothing behind
            blobs = _blobs([i for i, d in zip(batch, decided, strict=True) if d is None])
            if guarded:
                self.contents.put_large(blobs)
            self.contents.put_in(conn, blobs)
            # one INSERT per table for the batch's messages, not one per message (each is a
            # round trip on PostgreSQL and a statement's overhead on both); flushed before a
            # message with tracked copies or a pickup, so rows keep exactly their order
            rows: list[dict[str, Any]] = []
            records: list[EvidenceRecord] = []

            def flush() -> None:
                if rows or records:
                    CommunicationRepository.insert_in(conn, rows, records)
                    rows.clear()
                    records.clear()

            for item, done in zip(batch, decided, strict=True):
                if done is not None:
                    results.append(done)
                    continue
                rows.extend(item.rows)
                records.extend(item.records)
                if item.tracked or item.pickups:
                    flush()
                for copy in item.tracked:
                    TrackingRepository.insert_in(conn, copy.rows)
                if item.pickups:
                    assert self.pickup is not None
                    for pickup in item.pickups:
                        self.pickup.open_in(conn, pickup)
                results.append(item.accepted)
            flush()
        return results

    # -- refusals ---------------------------------------------------------------------------

    def reject(
        self,
        *,
        tenant_id: str,
        mail_from: str,
        recipients: Sequence[str],
        identification: Mapping[str, Any],
        code: str,
        text: str,
        raw: bytes | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> EvidenceRecord:
        """SubmissionRejection evidence, for a refusal where the sender was identified."""
        facts = describe_message(raw) if raw is not None else None
        record = new_record(
            tenant_id=tenant_id,
            event="SubmissionRejection",
            subject=Subject("submission", str(uuid.uuid4())),
            sender=Party(mail_from or "<>", None, dict(identification)),
            recipient=Party(recipients[0]) if len(recipients) == 1 else None,
            application_identifier=facts.message_id if facts else None,
            content=facts.content if facts else None,
            reasons=(Reason(code, text),),
            details={"recipients": list(recipients), **dict(details or {})},
        )
        CommunicationRepository(self.engine).append_records([record])
        return record


def _accepted(request: SubmissionRequest, accepted: Accepted) -> None:
    """Count and log each communication of a committed submission (after its commit: the
    250 or 201 follows), one line per communication with its id."""
    metrics.ACCEPTED.labels(request.via).inc(len(accepted.communication_ids))
    for communication_id in accepted.communication_ids:
        log.info(
            "submission.accepted",
            communication_id=communication_id,
            tenant_id=request.tenant_id,
            channel=request.via,
            message_id=accepted.message_id,
        )


def _from_allowed(raw: bytes, facts: MessageFacts, domains: frozenset[str]) -> bool:
    """Exactly one From mailbox, of one of ``domains`` (a second one could be anybody)."""
    if facts.from_address is None:
        return False
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(header_section(raw))
        mailboxes = getaddresses([str(v) for v in headers.get_all("From") or []])
    except Exception:
        return False
    if len([a for _, a in mailboxes if a]) != 1:
        return False
    try:
        return domain_of(facts.from_address) in domains
    except AddressError:
        return False


def _blobs(batch: Sequence[_Prepared]) -> list[bytes]:
    """Every content a batch's messages store: each message, each tracked copy."""
    blobs = [raw for item in batch for raw in item.raws or [item.request.raw]]
    return blobs + [copy.raw for item in batch for copy in item.tracked]


def _replay(item: _Prepared, earlier: list[Any]) -> Accepted | Exception:
    fingerprint = item.request.request_sha256 or item.facts.content.sha256
    if any((c.request_sha256 or c.content_sha256) != fingerprint for c in earlier):
        return Conflict(
            "this Idempotency-Key was used for a different message; use a new key per message"
        )
    return Accepted(
        submission_id=earlier[0].submission_id,
        communication_ids=tuple(c.id for c in earlier),
        recipients=tuple(c.recipient for c in earlier),
        message_id=earlier[0].message_id,
        record_ids=(),
        replayed=True,
    )
