"""Composition root: builds Sealpost's parts from settings, once per process.

Every entry point (``sealpost serve``, the CLI commands, the HTTP app, the tests) gets its
parts here, so a part is wired the same way everywhere.  Each part receives what it uses and
nothing else; no domain ever sees this object.  Background loops come from each domain's
``tasks.py`` and all start one way (:class:`sealpost.loops.Supervisor`).  Nothing here does
work at import time.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import Connection, Engine

import sealpost.archive
import sealpost.communications
import sealpost.sequences
import sealpost.signatures
import sealpost.sms
from sealpost.config import Settings
from sealpost.db import migrate
from sealpost.db.blob_stores import blob_storage
from sealpost.db.blobs import BlobStorage
from sealpost.db.engine import make_engine
from sealpost.events.webhooks.deliveries import Clock, utc_now
from sealpost.ledger.note import NoteSigner
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.repository import SqlLogStorage
from sealpost.ledger.sequencer import HeadSealer, Sequencer
from sealpost.ledger.timestamps import EmbeddedTimeStamper, HttpTimeStamper, TimeStamper
from sealpost.logging import get_logger
from sealpost.loops import Loop, Supervisor
from sealpost.pki import asn1
from sealpost.pki.errors import KeyMaterialError
from sealpost.pki.keys import (
    SigningIdentity,
    init_keys,
    init_note_key,
    load_identity,
    load_note_key,
    load_pkcs12,
)
from sealpost.pki.tsa import EmbeddedTSA
from sealpost.ratelimit import limiter
from sealpost.tenants.repository import TenantRepository

if TYPE_CHECKING:
    from cryptography import x509

    from sealpost.access.service import AccessService
    from sealpost.archive.endpoints import ArchiveParts
    from sealpost.archive.hold_endpoints import HoldParts
    from sealpost.archive.imap import ImapWorker
    from sealpost.archive.mailboxes import MailboxService
    from sealpost.archive.outgoing import OutgoingArchiver, SentMessage
    from sealpost.archive.ports import ScheduledEmail
    from sealpost.archive.scheduled import ScheduledSendService
    from sealpost.archive.search import ArchiveSearch
    from sealpost.archive.search_api import SearchParts
    from sealpost.archive.service import ArchiveService
    from sealpost.archive.sla import SlaService
    from sealpost.archive.sla_endpoints import SlaParts
    from sealpost.certificates.sealer import Sealer, SealingKeys
    from sealpost.communications.certificates import CertificateService
    from sealpost.communications.contents import ContentStore
    from sealpost.communications.email.client_limits import SmtpClientLimits
    from sealpost.communications.email.delivery import DeliveryWorker
    from sealpost.communications.email.outgoing import CertifiedMailer
    from sealpost.communications.email.replies import ReplyAddresses
    from sealpost.communications.email.smtp_server import SmtpListeners
    from sealpost.communications.email.submission import SubmissionService
    from sealpost.communications.email.verp import BounceAddresses
    from sealpost.communications.endpoints import CommunicationsParts
    from sealpost.communications.ports import JournalEnvelope, NewPickup, PickupRequest
    from sealpost.communications.reply_repository import ReplyRepository
    from sealpost.communications.repository import CommunicationRepository
    from sealpost.communications.tracking.service import TrackingService
    from sealpost.deadlines.endpoints import DeadlinesParts
    from sealpost.deadlines.service import DeadlineService
    from sealpost.events.dispatcher import EventDispatcher
    from sealpost.events.endpoints import EventsParts
    from sealpost.events.outbox import OutboxRepository
    from sealpost.events.webhooks.deliveries import WebhookDeliveryLog
    from sealpost.events.webhooks.fanout import WebhookReplay
    from sealpost.events.webhooks.queue import WebhookQueue
    from sealpost.events.webhooks.repository import WebhookRepository
    from sealpost.events.webhooks.sender import WebhookSender
    from sealpost.pickup.endpoints import PickupParts
    from sealpost.pickup.ports import OutgoingMail as PickupOutgoingMail
    from sealpost.pickup.ports import OutgoingSms as PickupOutgoingSms
    from sealpost.pickup.service import PickupService
    from sealpost.sequences.endpoints import SequencesParts
    from sealpost.sequences.ports import OutgoingEmail as SequenceEmail
    from sealpost.sequences.ports import OutgoingSms as SequenceSms
    from sealpost.sequences.service import SequenceService
    from sealpost.sequences.tasks import Follower, Scheduler
    from sealpost.signatures.endpoints import SignaturesParts
    from sealpost.signatures.intake import PdfIntake
    from sealpost.signatures.ports import OutgoingMail
    from sealpost.signatures.ports import OutgoingSms as SignatureOutgoingSms
    from sealpost.signatures.service import SignatureService
    from sealpost.sms.endpoints import SmsParts
    from sealpost.sms.providers import SmsProvider
    from sealpost.sms.replies import SmsReplies
    from sealpost.sms.repository import SmsRepository
    from sealpost.sms.service import SmsService
    from sealpost.sms.tasks import SmsSender
    from sealpost.tenants.senders import SenderRepository

log = get_logger(__name__)

DOMAINS = (
    sealpost.communications,
    sealpost.signatures,
    sealpost.sms,
    sealpost.sequences,
    sealpost.archive,
)
"""The domains composed here; importing each registers its event kinds, so every process
built here derives every domain's events, whatever part of it runs."""


def ensure_local_keys(settings: Settings) -> None:
    """Create the embedded default's keys on first start (never overwrites existing ones).

    Not the log's note key: whether one may be made depends on the log
    (:func:`ensure_note_key`, once the schema is there)."""
    operator_seal = settings.seal_pkcs12 or (settings.seal_certificate and settings.seal_key)
    keys_dir = settings.resolved_keys_dir
    if not (operator_seal and settings.tsa_url) and not (keys_dir / "seal.pem").exists():
        init_keys(keys_dir, note_key=False)
        log.info("keys.created", directory=str(keys_dir))


def _missing_note_key(settings: Settings, expected: bytes) -> KeyMaterialError:
    return KeyMaterialError(
        f"the log's note key is missing: the log's checkpoints are signed by note key id "
        f"{expected.hex()} (name {settings.ledger_origin}); install that key at "
        "SEALPOST_LOG_NOTE_KEY (default <keys dir>/log-note.key), shared by every sequencer "
        "candidate.  A new key is only made for a log none of whose heads is signed yet: "
        "another would change the log's identity to its monitors and witnesses",
        path=settings.resolved_log_note_key,
    )


def ensure_note_key(settings: Settings, storage: SqlLogStorage) -> None:
    """Create the log's Ed25519 note key (``SEALPOST_LOG_NOTE_KEY``) when it is missing and
    no head carries a note signature yet (a fresh log, or one older than signed notes), also
    beside an operator's seal and TSA.  Once a head carries one, it is never made: each host
    making its own would change the log's identity silently (a sequencer takeover, an
    emptied keys directory); a process that needs it (a sequencer candidate, the API) then
    fails in :attr:`Sealpost.note_signer`, naming the key ID the log expects, and one that
    does not (an SMTP host that never seals) runs without it."""
    path = settings.resolved_log_note_key
    if path.exists() or path.is_symlink() or storage.note_key_id() is not None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        init_note_key(path)
        log.info("keys.note_key_created", path=str(path))
    except FileExistsError:  # another process starting at the same time made it: use it
        pass


@dataclass(frozen=True)
class SignatureMail:
    """Signatures' ``Mailer`` port over communications: the invitations, reminders, codes
    and copies of a process are certified emails like any other."""

    mailer: CertifiedMailer

    def send(self, mail: OutgoingMail) -> str:
        return self.mailer.send(
            tenant_id=mail.tenant_id,
            sender=mail.sender,
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            attachments=mail.attachments,
            identification=mail.identification,
            details=mail.details,
            access_secret=mail.access_secret,
        )


@dataclass(frozen=True)
class PickupMail:
    """Pickup's ``Mailer`` port over communications: notices, reminders and codes are
    certified emails like any other (each with its own evidence)."""

    mailer: CertifiedMailer

    def send(self, mail: PickupOutgoingMail) -> str:
        return self.mailer.send(
            tenant_id=mail.tenant_id,
            sender=mail.sender,
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            identification=mail.identification,
            details=mail.details,
            access_secret=mail.access_secret,
        )


@dataclass(frozen=True)
class PickupSms:
    """Pickup's ``SmsSender`` port over the sms domain: a code by SMS is a certified SMS like
    any other (its own SubmissionAcceptance, operator and receipt evidence)."""

    sms: SmsService

    def send(self, sms: PickupOutgoingSms) -> str:
        return self.sms.send(
            sms.tenant_id, sms.to, sms.text, dict(sms.details), access_secret=sms.access_secret
        )


@dataclass(frozen=True)
class PickupSmsStates:
    """Pickup's ``SmsStates`` port over the sms repository: a notice by SMS is delivered when
    its own receipts say so."""

    sms: SmsRepository

    def status(self, sms_id: str) -> str | None:
        found = self.sms.get(sms_id)
        return None if found is None else found.status


@dataclass(frozen=True)
class SignatureSms:
    """Signatures' ``SmsSender`` port over the sms domain: a signer's code by SMS is a
    certified SMS like any other (its own SubmissionAcceptance, operator and receipt
    evidence)."""

    sms: SmsService

    def send(self, sms: SignatureOutgoingSms) -> str:
        return self.sms.send(
            sms.tenant_id, sms.to, sms.text, dict(sms.details), access_secret=sms.access_secret
        )


def refused_sender(senders: SenderRepository, tenant_id: str, address: str) -> str | None:
    """Why ``address`` may not be the From of the tenant's mail, or None: once a tenant has
    registered sending domains, its From is held to them (as ``POST /v1/communications``
    holds it), so that no port (scheduled sends, sequences) sends as someone else's domain."""
    from sealpost.communications.email.addresses import AddressError, domain_of

    domains = senders.sender_domains(tenant_id)
    if not domains:
        return None
    try:
        if domain_of(address) in domains:
            return None
    except AddressError:
        pass
    return f"From must be an address of {', '.join(sorted(domains))}"


@dataclass(frozen=True)
class SequenceMessenger:
    """Sequences' ``Messenger`` port: an email step is a certified email of communications
    (``certified_email_pickup``: by registered pickup), an SMS step a certified SMS; each
    with its own evidence.  The step's guard rides in the message's own group commit."""

    mailer: CertifiedMailer
    sms_service: Callable[[], SmsService]
    senders: SenderRepository

    def refused_sender(self, tenant_id: str, address: str) -> str | None:
        return refused_sender(self.senders, tenant_id, address)

    def email(self, mail: SequenceEmail) -> str:
        return self.mailer.send(
            tenant_id=mail.tenant_id,
            sender=mail.sender,
            sender_name=mail.sender_name,
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            pickup=mail.pickup,
            identification={"method": "sequence"},
            details={
                **mail.details,
                **({"deadline": dict(mail.deadline)} if mail.deadline else {}),
            },
            guard_in=mail.guard_in,
            certificate=mail.certificate,
            reply_capture=mail.capture_replies and not mail.pickup,
            sender_domains=self.senders.sender_domains(mail.tenant_id),
        )

    def sms(self, sms: SequenceSms) -> str:
        return self.sms_service().send(
            sms.tenant_id,
            sms.to,
            sms.text,
            dict(sms.details),
            guard_in=sms.guard_in,
            certificate=sms.certificate,
            respect_opt_out=sms.respect_opt_out,
        )


@dataclass(frozen=True)
class ArchiveSender:
    """The archive's ``Sender`` port: a scheduled send is a certified email of communications
    (a plain one without its automatic certificate; by registered pickup when asked), with
    its own evidence; the send's guard rides in the message's own group commit.  Its From is
    held to the tenant's registered domains exactly as ``POST /v1/communications`` holds it
    (when scheduled, and again by the submission when sent)."""

    mailer: CertifiedMailer
    senders: SenderRepository

    def refused_sender(self, tenant_id: str, address: str) -> str | None:
        return refused_sender(self.senders, tenant_id, address)

    def email(self, mail: ScheduledEmail) -> str:
        return self.mailer.send(
            tenant_id=mail.tenant_id,
            sender=mail.sender,
            sender_name=mail.sender_name,
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            pickup=mail.pickup,
            identification={"method": "scheduled_send"},
            details=dict(mail.details),
            guard_in=mail.guard_in,
            certificate=mail.certificate,
            sender_domains=self.senders.sender_domains(mail.tenant_id),
        )


@dataclass(frozen=True)
class PickupStates:
    """Pickup's ``CommunicationStates`` port over the communications repository."""

    communications: CommunicationRepository

    def finish_in(
        self, conn: Connection, communication_id: str, status: str, now: datetime
    ) -> None:
        self.communications.finish_pickup_in(conn, communication_id, status, now)

    def touch_in(self, conn: Connection, communication_id: str, now: datetime) -> None:
        self.communications.touch_in(conn, communication_id, now)

    def status(self, communication_id: str) -> str | None:
        found = self.communications.get(communication_id)
        return None if found is None else found.status


@dataclass(frozen=True)
class DeadlineSubjects:
    """The deadlines kit's ``SubjectEvidence`` port: a deadline record on a communication
    makes its certificate due again (the term, then its passing, appear on it)."""

    communications: CommunicationRepository

    def recorded_in(
        self, conn: Connection, subject_type: str, subject_id: str, now: datetime
    ) -> None:
        if subject_type == "communication":
            self.communications.evidence_added_in(conn, subject_id, now)


@dataclass(frozen=True)
class PickupDeskAdapter:
    """Communications' ``PickupDesk`` port over the pickup service (built on first use: the
    service mails through the submissions that hold this desk)."""

    service: Callable[[], PickupService]

    def default_delivery(self, tenant_id: str) -> str:
        return self.service().default_delivery(tenant_id)

    def resolve(self, tenant_id: str, request: PickupRequest) -> Mapping[str, Any]:
        from sealpost.pickup.model import PickupOptions

        return self.service().resolve(
            tenant_id,
            PickupOptions(
                identification=request.identification,
                consent=request.consent,
                policy=request.policy,
                phone=request.phone,
                challenge_question=request.challenge_question,
                challenge_answer=request.challenge_answer,
                notice=request.notice,
            ),
        )

    def open_in(self, conn: Connection, pickup: NewPickup) -> None:
        self.service().open_in(
            conn,
            tenant_id=pickup.tenant_id,
            communication_id=pickup.communication_id,
            recipient=pickup.recipient,
            sender=pickup.sender,
            sender_name=pickup.sender_name,
            subject=pickup.subject,
            content_sha256=pickup.content_sha256,
            options=pickup.options,
            now=pickup.now,
        )

    def describe(self, tenant_id: str, communication_id: str) -> dict[str, Any] | None:
        return self.service().describe(tenant_id, communication_id)


def redacted_journal_address(address: str) -> str:
    """``journal+…@<domain>``: a journal address without its token.  The token is the
    address's only secret (no SMTP authentication), and a sighting's reference is read by every
    agent who sees the message; the other tenants named in the same transaction are not kept
    at all (their addresses would tell one tenant another's token)."""
    domain = address.rpartition("@")[2]
    return f"journal+\N{HORIZONTAL ELLIPSIS}@{domain[:255]}"


@dataclass(frozen=True)
class ArchiveJournal:
    """Communications' ``JournalSink`` port over the archive: a message sent to a tenant's
    journal address is ingested byte-exact, its SMTP envelope (Bcc recipients live only
    there) kept as the sighting's reference."""

    service: Callable[[], ArchiveService]

    def tenant_for_token(self, token: str) -> str | None:
        return self.service().repo.tenant_for_journal_token(token)

    def archive(self, tenant_id: str, data: BinaryIO, envelope: JournalEnvelope) -> str:
        from sealpost.archive.model import Source

        # the reference is in a unique index: PostgreSQL's B-tree takes ~2.7 KB per entry
        ref = {
            "transaction": envelope.transaction_id,
            "mail_from": envelope.mail_from[:320],
            # every recipient of a journal transaction is a journal address (another kind is
            # refused at RCPT): this tenant's, redacted, and no other tenant's
            "rcpt_to": sorted({redacted_journal_address(r) for r in envelope.rcpt_to})[:1],
            "mail_options": [o[:64] for o in envelope.mail_options[:8]],
            "client_ip": envelope.client_ip[:64],
            "helo": (envelope.helo or "")[:255] or None,
            "received_at": envelope.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            **({"tls": dict(envelope.tls)} if envelope.tls else {}),
        }
        source = Source("journal", json.dumps(ref, sort_keys=True, separators=(",", ":")))
        return self.service().ingest(tenant_id, data, source).message.id


_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:")


@dataclass(frozen=True)
class ArchiveSentMail:
    """The archive's ``SentMail`` port over communications: the message as accepted (the bytes
    its SubmissionAcceptance seals), with the Message-ID the delivery adds when the sender gave
    none (so that the customer's answer finds its thread); None for a message carrying an
    access secret (never shown to the tenant: :mod:`sealpost.certificates.secrets`)."""

    communications: CommunicationRepository
    contents: ContentStore

    def sent(self, communication_id: str) -> SentMessage | None:
        from sealpost.archive.outgoing import SentMessage
        from sealpost.certificates.secrets import accepted_with_secret

        c = self.communications.get(communication_id)
        if c is None or c.channel != "email":
            return None
        timeline = self.communications.timeline(c.tenant_id, c.id)
        if accepted_with_secret((e.event, e.record) for e in timeline):
            return None
        raw = self.contents.get(c.content_sha256)
        end = raw.find(b"\r\n\r\n")
        head = raw[: end if end >= 0 else raw.find(b"\n\n")]
        if not _MESSAGE_ID.search(head):
            newline = b"\r\n" if b"\r\n" in raw[:1000] else b"\n"
            raw = b"Message-ID: " + c.message_id.encode() + newline + raw
        return SentMessage(c.tenant_id, c.id, raw)


@dataclass
class Sealpost:
    """The parts of one Sealpost process."""

    settings: Settings
    supervisor: Supervisor = field(default_factory=Supervisor)
    work_available: threading.Event = field(default_factory=threading.Event)
    """Set when new submissions commit, so the delivery worker wakes at once."""
    webhooks_due: threading.Event = field(default_factory=threading.Event)
    """Set when the dispatcher fans events out, so the webhook sender wakes at once."""
    sms_due: threading.Event = field(default_factory=threading.Event)
    """Set when an SMS is accepted, so the SMS sender wakes at once."""
    clock: Clock = utc_now
    """The wall clock of webhook scheduling (fan-out, claims, retries), read by the parts built
    after it is set: a test drives an hour of retries through it."""
    _smtp: SmtpListeners | None = None
    smtp_ports: dict[str, int] = field(default_factory=dict)
    smtp_client_limits: SmtpClientLimits | None = None
    """The SMTP listeners' per-IP limits, once started."""

    @cached_property
    def engine(self) -> Engine:
        return make_engine(
            self.settings.resolved_database_url,
            sqlite_synchronous=self.settings.sqlite_synchronous,
            pool_size=self.settings.database_pool_size,
        )

    def migrate(self) -> None:
        migrate.upgrade(self.engine)

    @cached_property
    def log_storage(self) -> SqlLogStorage:
        return SqlLogStorage(self.engine)

    @cached_property
    def ledger(self) -> LedgerReader:
        return LedgerReader(self.log_storage)

    @cached_property
    def tenants(self) -> TenantRepository:
        return TenantRepository(self.engine)

    @cached_property
    def blobs(self) -> BlobStorage:
        """Communication contents and certificates (never deleted)."""
        return blob_storage(self.settings, "blobs")

    def _local(self, name: str) -> SigningIdentity:
        keys = self.settings.resolved_keys_dir
        return load_identity(
            keys / f"{name}.pem", keys / f"{name}.key", chain_path=keys / "root-ca.pem"
        )

    @cached_property
    def seal_identity(self) -> SigningIdentity:
        s = self.settings
        password = s.seal_key_password.get_secret_value().encode() if s.seal_key_password else None
        if s.seal_pkcs12:
            return load_pkcs12(s.seal_pkcs12, password)
        if s.seal_certificate and s.seal_key:
            return load_identity(s.seal_certificate, s.seal_key, password=password)
        return self._local("seal")

    @cached_property
    def embedded_tsa(self) -> EmbeddedTSA:
        return EmbeddedTSA(self._local("tsa"), policy_oid=self.settings.tsa_policy_oid)

    @cached_property
    def timestamper(self) -> TimeStamper:
        s = self.settings
        if s.tsa_url:
            auth = None
            if s.tsa_username and s.tsa_password:
                auth = (s.tsa_username, s.tsa_password.get_secret_value())
            return HttpTimeStamper(s.tsa_url, timeout=s.tsa_timeout_seconds, auth=auth)
        return EmbeddedTimeStamper(self.embedded_tsa)

    @cached_property
    def note_signer(self) -> NoteSigner:
        """The log's Ed25519 key for C2SP signed notes, named after the log origin.

        KeyMaterialError, naming both key IDs, when the log's heads are signed by another key
        (or another origin): this process would seal or publish another identity."""
        path = self.settings.resolved_log_note_key
        expected = self.log_storage.note_key_id()
        if expected is not None and not (path.exists() or path.is_symlink()):
            raise _missing_note_key(self.settings, expected)
        signer = NoteSigner(self.settings.ledger_origin, load_note_key(path))
        own = signer.verifier.key_id
        if expected is not None and own != expected:
            log.error("keys.note_key_mismatch", own=own.hex(), expected=expected.hex())
            raise KeyMaterialError(
                f"this note key (key id {own.hex()}, name {signer.name}) is not the log's: its "
                f"checkpoints are signed by note key id {expected.hex()}.  Every sequencer "
                "candidate must have the log's key (SEALPOST_LOG_NOTE_KEY, or a shared keys "
                "directory); this process does not start with another",
                path=path,
            )
        return signer

    @cached_property
    def sequencer(self) -> Sequencer:
        sealer = HeadSealer(
            self.settings.ledger_origin, self.seal_identity, self.timestamper, self.note_signer
        )
        return Sequencer(self.log_storage, sealer, max_batch=self.settings.batch_max_records)

    @cached_property
    def contents(self) -> ContentStore:
        from sealpost.communications.contents import ContentStore

        return ContentStore(
            self.engine, self.blobs, inline_max_bytes=self.settings.content_inline_max_bytes
        )

    @cached_property
    def communications(self) -> CommunicationRepository:
        from sealpost.communications.repository import CommunicationRepository

        return CommunicationRepository(self.engine)

    @cached_property
    def senders(self) -> SenderRepository:
        from sealpost.tenants.senders import SenderRepository

        return SenderRepository(self.engine)

    @cached_property
    def submissions(self) -> SubmissionService:
        from sealpost.communications.email.replies import ReplyCapture
        from sealpost.communications.email.submission import SubmissionService

        return SubmissionService(
            self.engine,
            self.contents,
            self.settings,
            on_commit=self.work_available.set,
            pickup=PickupDeskAdapter(lambda: self.pickup),
            tracking=self.tracking,
            replies=ReplyCapture(self.reply_addresses, self.replies.capture),
        )

    @cached_property
    def tracking(self) -> TrackingService:
        """Open and click tracking of direct emails (per tenant, off by default)."""
        from sealpost.communications.tracking.repository import TrackingRepository
        from sealpost.communications.tracking.service import TrackingService

        return TrackingService(
            TrackingRepository(self.engine), self.settings, clock=lambda: self.clock()
        )

    @cached_property
    def replies(self) -> ReplyRepository:
        """Replies to communications, and each tenant's reply-capture switch."""
        from sealpost.communications.reply_repository import ReplyRepository

        return ReplyRepository(self.engine, self.contents)

    @cached_property
    def reply_addresses(self) -> ReplyAddresses:
        """Signed reply addresses (``replies+<id>.<tag>@<bounce domain>``), keyed like the
        return paths (with a label of their own)."""
        from sealpost.communications.email.replies import ReplyAddresses

        return ReplyAddresses(self.return_paths.secret, self.settings.resolved_bounce_domain)

    @cached_property
    def delivery(self) -> DeliveryWorker:
        from sealpost.communications.email.delivery import DeliveryWorker

        return DeliveryWorker(
            repository=self.communications,
            contents=self.contents,
            senders=self.senders,
            settings=self.settings,
            return_paths=self.return_paths,
            wake=self.work_available,
        )

    @cached_property
    def deadlines(self) -> DeadlineService:
        """Legal deadlines: tenant calendars, terms started from their trigger evidence."""
        from sealpost.deadlines.repository import DeadlineRepository
        from sealpost.deadlines.service import DeadlineService, DeadlineSettings

        return DeadlineService(
            DeadlineRepository(self.engine, DeadlineSubjects(self.communications)),
            self.outbox,
            self.engine,
            DeadlineSettings(lead_business_days=self.settings.deadlines_lead_business_days),
            now=lambda: self.clock(),
        )

    @cached_property
    def deadlines_parts(self) -> DeadlinesParts:
        from sealpost.deadlines.endpoints import DeadlinesParts

        return DeadlinesParts(service=self.deadlines)

    @cached_property
    def outbox(self) -> OutboxRepository:
        from sealpost.events.outbox import OutboxRepository

        return OutboxRepository(self.engine)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        from sealpost.events.webhooks.repository import WebhookRepository

        return WebhookRepository(self.engine)

    @cached_property
    def webhook_queue(self) -> WebhookQueue:
        from sealpost.events.webhooks.queue import WebhookQueue

        return WebhookQueue(self.engine, clock=self.clock)

    @cached_property
    def webhook_log(self) -> WebhookDeliveryLog:
        from sealpost.events.webhooks.deliveries import WebhookDeliveryLog

        return WebhookDeliveryLog(self.engine)

    @cached_property
    def webhook_replay(self) -> WebhookReplay:
        from sealpost.events.webhooks.fanout import WebhookReplay

        return WebhookReplay(self.engine)

    @cached_property
    def dispatcher(self) -> EventDispatcher:
        from sealpost.events.amqp import AmqpPublisher
        from sealpost.events.dispatcher import EventDispatcher

        s = self.settings
        publisher = None
        if s.amqp_url:
            publisher = AmqpPublisher(
                s.amqp_url,
                exchange=s.amqp_exchange,
                queue_prefix=s.amqp_queue_prefix,
                queue_type=s.amqp_queue_type,
            )
        return EventDispatcher(
            self.outbox,
            s,
            publisher=publisher,
            on_positioned=self.webhooks_due.set,
            clock=self.clock,
        )

    def amqp_unreachable_seconds(self) -> float | None:
        """How long this process's dispatcher has been failing to publish to RabbitMQ; None
        when it publishes, or does not run here (``/healthz``)."""
        dispatcher: EventDispatcher | None = self.__dict__.get("dispatcher")
        return None if dispatcher is None else dispatcher.amqp_unreachable_seconds()

    @cached_property
    def webhook_sender(self) -> WebhookSender:
        from sealpost.events.webhooks.sender import WebhookSender

        return WebhookSender(
            self.webhook_queue, self.settings, wake=self.webhooks_due, clock=self.clock
        )

    @cached_property
    def access(self) -> AccessService:
        """Links, page sessions and one-time codes of every page a person opens."""
        from sealpost.access import codes
        from sealpost.access.repository import AccessRepository
        from sealpost.access.service import AccessService

        return AccessService(
            AccessRepository(self.engine),
            code_key=codes.key_for(self.seal_identity),
            codes_per_ip=limiter(self.settings.rate_limit_codes_per_ip),
        )

    @cached_property
    def certified_mailer(self) -> CertifiedMailer:
        """Sealpost's own certified emails (signing invitations, codes), as any tenant's."""
        from sealpost.communications.email.outgoing import CertifiedMailer

        return CertifiedMailer(self.submissions, hostname=self.settings.hostname)

    @cached_property
    def pdf_intake(self) -> PdfIntake:
        """The worker processes that read uploaded PDFs under limits (started when first
        used; ``serve`` starts them as the API starts)."""
        from sealpost.signatures.intake import PdfIntake

        return PdfIntake.from_settings(self.settings)

    @cached_property
    def signatures(self) -> SignatureService:
        from sealpost.signatures.model import SigningConfig
        from sealpost.signatures.repository import SignatureRepository
        from sealpost.signatures.service import SignatureService

        return SignatureService(
            repo=SignatureRepository(self.engine),
            access=self.access,
            tenants=self.tenants,
            contents=self.contents,
            mailer=SignatureMail(self.certified_mailer),
            seal=self.seal_identity,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            config=SigningConfig.from_settings(self.settings),
            intake=self.pdf_intake,
            sms=self.signature_sms,
        )

    @cached_property
    def signature_sms(self) -> SignatureSms | None:
        """SMS codes for signers, when an operator is configured (else ``sms_otp`` signers
        are refused with a 422 naming the field)."""
        return SignatureSms(self.sms) if self.settings.sms_provider != "none" else None

    @cached_property
    def pickup(self) -> PickupService:
        """Registered pickup: notices, the recipient's page, expiries."""
        from sealpost.pickup.repository import PickupRepository
        from sealpost.pickup.service import PickupConfig, PickupService

        return PickupService(
            PickupRepository(self.engine),
            self.access,
            PickupMail(self.certified_mailer),
            PickupStates(self.communications),
            PickupConfig.from_settings(self.settings),
            sms=self.pickup_sms,
            sms_states=PickupSmsStates(self.sms_repository),
            clock=lambda: self.clock(),
        )

    @cached_property
    def pickup_parts(self) -> PickupParts:
        from sealpost.pickup.endpoints import PickupParts
        from sealpost.pickup.recipient import PickupPage

        return PickupParts(service=self.pickup, page=PickupPage(self.pickup, self.contents))

    @cached_property
    def sms_repository(self) -> SmsRepository:
        from sealpost.sms.repository import SmsRepository

        return SmsRepository(self.engine)

    @cached_property
    def sms(self) -> SmsService:
        """Certified SMS; also the receipt sink of the operator adapters and the ``send``
        that other domains' ``SmsSender`` ports are adapted to."""
        from sealpost.sms.service import SmsService, SmsSettings

        s = self.settings
        return SmsService(
            self.sms_repository,
            SmsSettings(
                default_sender=s.sms_default_sender,
                unconfirmed_after_seconds=s.sms_unconfirmed_after_seconds,
                retry_initial_seconds=s.sms_retry_initial_seconds,
                retry_max_seconds=s.sms_retry_max_seconds,
                validity_seconds=s.sms_validity_seconds,
            ),
            on_accept=self.sms_due.set,
            opted_out=lambda tenant_id, phone: self.sms_replies.opted_out(tenant_id, phone),
        )

    @cached_property
    def sms_replies(self) -> SmsReplies:
        """Answers to SMS (mobile-originated messages) and the tenants' opt-out lists; the
        operator adapters' inbound sink."""
        from sealpost.sms.replies import SmsReplies
        from sealpost.sms.reply_repository import SmsReplyRepository

        return SmsReplies(self.sms_repository, SmsReplyRepository(self.engine))

    @cached_property
    def sms_provider(self) -> SmsProvider | None:
        """The operator adapter SMS_PROVIDER names (None: accepted SMS wait, queued)."""
        s = self.settings
        if s.sms_provider == "smpp":
            from sealpost.sms.smpp import SmppConfig, SmppProvider

            return SmppProvider(
                SmppConfig(
                    host=s.smpp_host,
                    port=s.smpp_port,
                    system_id=s.smpp_system_id,
                    password=s.smpp_password.get_secret_value(),
                    system_type=s.smpp_system_type,
                    source_address=s.smpp_source_address or s.sms_default_sender,
                    timeout_seconds=s.smpp_timeout_seconds,
                    enquire_link_seconds=s.smpp_enquire_link_seconds,
                    partial_retry_seconds=s.smpp_partial_retry_seconds,
                ),
                sink=self.sms,
                inbound=self.sms_replies,
            )
        if s.sms_provider == "http":
            from sealpost.sms.http_gateway import provider_from_settings

            return provider_from_settings(s)
        return None

    @cached_property
    def pickup_sms(self) -> PickupSms | None:
        """SMS codes for pickup recipients, when an operator is configured (else ``sms_otp``
        is refused with a 422 rather than accepted into a queue nothing sends)."""
        return PickupSms(self.sms) if self.settings.sms_provider != "none" else None

    @cached_property
    def sms_senders(self) -> list[SmsSender]:
        """SMS_SENDERS claim loops sharing the one operator adapter (none without one)."""
        from sealpost.sms.tasks import SmsSender

        provider = self.sms_provider
        if provider is None:
            return []
        s = self.settings
        return [
            SmsSender(
                self.sms,
                provider,
                concurrency=s.sms_concurrency,
                batch=s.sms_batch,
                lease_seconds=s.sms_lease_seconds,
                wake=self.sms_due,
                name=f"sms-sender-{i}",
            )
            for i in range(s.sms_senders)
        ]

    @cached_property
    def return_paths(self) -> BounceAddresses:
        """Signed VERP return paths; every replica derives the same secret from the seal key."""
        from cryptography.hazmat.primitives import serialization

        from sealpost.communications.email.verp import BounceAddresses, derive_secret

        key_der = self.seal_identity.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return BounceAddresses(derive_secret(key_der), self.settings.resolved_bounce_domain)

    @cached_property
    def trust_roots(self) -> list[x509.Certificate]:
        """Root certificates evidence is validated against: the seal's, and the local CA's."""
        from cryptography import x509

        roots = [self.seal_identity.chain[-1]] if self.seal_identity.chain else []
        local = self.settings.resolved_keys_dir / "root-ca.pem"
        if local.exists():
            roots.append(x509.load_pem_x509_certificate(local.read_bytes()))
        return roots

    @cached_property
    def certificates(self) -> CertificateService:
        from sealpost.communications.certificates import CertificateService

        return CertificateService(
            repository=self.communications,
            tenants=self.tenants,
            ledger=self.ledger,
            blobs=self.blobs,
            contents=self.contents,
            seal=self.seal_identity,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            ledger_origin=self.settings.ledger_origin,
            hostname=self.settings.hostname,
            sealer=self.certificate_sealer,
        )

    @cached_property
    def certificate_sealer(self) -> Sealer | None:
        """The background issuer's worker processes (started at its first certificate), or
        None: in the issuer's thread (``certificate_processes=0``)."""
        from sealpost.certificates.sealer import ProcessSealer

        if self.settings.certificate_processes == 0:
            return None
        return ProcessSealer(
            functools.partial(sealing_keys, self.settings), self.settings.certificate_processes
        )

    def start_smtp(self) -> dict[str, int]:
        """Bind the SMTP listeners (submission, implicit TLS, inbound); returns their ports."""
        from sealpost.communications.email.client_limits import SmtpClientLimits
        from sealpost.communications.email.inbound import (
            BounceProcessor,
            InboundHandler,
            inbound_factory,
        )
        from sealpost.communications.email.reply_intake import ReplyIntake
        from sealpost.communications.email.smtp_server import (
            SmtpListeners,
            SubmissionHandler,
            server_tls_context,
            submission_factory,
        )

        s = self.settings
        keys = s.resolved_keys_dir
        tls = server_tls_context(
            str(s.smtp_tls_certificate or keys / "smtp-tls.pem"),
            str(s.smtp_tls_key or keys / "smtp-tls.key"),
        )
        listeners = SmtpListeners()
        self._smtp = listeners
        shared = s.smtp_processes > 1
        handler = SubmissionHandler(self.submissions, self.senders, s)
        senders = self.senders

        def exempt_cached(ip: str) -> bool | None:
            cached, tenant = senders.cached_tenant_for_client(ip)
            return (tenant is not None) if cached else None

        limits = SmtpClientLimits.from_settings(
            s,
            exempt=lambda ip: senders.tenant_for_client(ip) is not None,
            exempt_cached=exempt_cached,
        )
        self.smtp_client_limits = limits
        ports = {
            "submission": listeners.listen(
                submission_factory(handler, s, tls, implicit_tls=False, client_limits=limits),
                s.smtp_host,
                s.smtp_submission_port,
                reuse_port=shared,
            )
        }
        if s.smtp_tls_port is not None:
            ports["tls"] = listeners.listen(
                submission_factory(handler, s, tls, implicit_tls=True, client_limits=limits),
                s.smtp_host,
                s.smtp_tls_port,
                tls=tls,
                reuse_port=shared,
            )
        if s.smtp_inbound_port is not None:
            inbound = InboundHandler(
                self.submissions,
                self.senders,
                BounceProcessor(self.communications),
                s,
                self.return_paths,
                replies=ReplyIntake(self.communications, self.replies, self.reply_addresses),
                journal=self.archive_journal,
                journal_max_bytes=s.archive_journal_max_bytes,
            )
            ports["inbound"] = listeners.listen(
                inbound_factory(inbound, s, tls, client_limits=limits),
                s.smtp_host,
                s.smtp_inbound_port,
                reuse_port=shared,
            )
        self.smtp_ports = ports
        return ports

    def smtp_serving(self) -> bool | None:
        """Whether this process's SMTP listeners accept connections; None when it runs none
        (``/readyz``)."""
        return None if self._smtp is None else self._smtp.serving()

    # -- the parts each domain's endpoints use (its FastAPI dependency reads them) -----------

    @cached_property
    def communications_parts(self) -> CommunicationsParts:
        from sealpost.communications.endpoints import CommunicationsParts

        return CommunicationsParts(
            communications=self.communications,
            contents=self.contents,
            senders=self.senders,
            submissions=self.submissions,
            certificates=self.certificates,
            ledger=self.ledger,
            settings=self.settings,
            pickup=self.submissions.pickup,
            tracking=self.tracking,
            replies=self.replies,
            deadlines=self.deadlines.repo,
        )

    @cached_property
    def events_parts(self) -> EventsParts:
        from sealpost.events.endpoints import EventsParts

        return EventsParts(
            outbox=self.outbox,
            webhooks=self.webhooks,
            webhook_log=self.webhook_log,
            webhook_replay=self.webhook_replay,
            settings=self.settings,
            webhooks_due=self.webhooks_due,
        )

    @cached_property
    def sms_parts(self) -> SmsParts:
        from sealpost.sms.certificates import SmsCertificates
        from sealpost.sms.endpoints import SmsParts
        from sealpost.sms.repository import SmsCertificateRepository

        tenants = self.tenants
        certificates = SmsCertificates(
            repository=self.sms_repository,
            certificates=SmsCertificateRepository(self.engine),
            blobs=self.blobs,
            tenant_name=lambda tenant_id: tenants.get(tenant_id).name,
            ledger=self.ledger,
            seal=self.seal_identity,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            ledger_origin=self.settings.ledger_origin,
            hostname=self.settings.hostname,
        )
        return SmsParts(
            service=self.sms,
            repository=self.sms_repository,
            certificates=certificates,
            replies=self.sms_replies,
        )

    @cached_property
    def signatures_parts(self) -> SignaturesParts:
        from sealpost.signatures.endpoints import SignaturesParts

        return SignaturesParts(signatures=self.signatures, ledger=self.ledger)

    # -- background loops: each domain's tasks.py says which, the supervisor runs them -------

    def ledger_loops(self) -> list[Loop]:
        from sealpost.ledger import tasks

        return tasks.loops(self.sequencer, self.settings)

    def communications_loops(self) -> list[Loop]:
        from sealpost.communications import tasks

        s = self.settings
        if not (s.delivery_enabled or s.certificates_enabled):
            return []
        return tasks.loops(self.delivery, self.certificates, s)

    def events_loops(self) -> list[Loop]:
        from sealpost.events import tasks

        s = self.settings
        if not (s.events_dispatcher_enabled or s.webhooks_enabled):
            return []
        return tasks.loops(self.dispatcher, self.webhook_sender, s)

    def signatures_loops(self) -> list[Loop]:
        from sealpost.signatures import tasks

        if not self.settings.signing_worker_enabled:
            return []
        return tasks.loops(self.signatures, self.settings)

    def deadlines_loops(self) -> list[Loop]:
        from sealpost.deadlines import tasks

        return tasks.loops(self.deadlines, self.settings)

    @cached_property
    def sequences(self) -> SequenceService:
        """Reminder sequences: definitions, enrolments, the send guard, stops."""
        from sealpost.sequences.repository import SequenceRepository
        from sealpost.sequences.service import SequenceService

        return SequenceService(
            SequenceRepository(self.engine),
            SequenceMessenger(self.certified_mailer, lambda: self.sms, self.senders),
            public_url=self.settings.resolved_public_url,
            clock=lambda: self.clock(),
            calendars=lambda tenant_id, code: self.deadlines.calendar(tenant_id, code),
        )

    @cached_property
    def sequence_scheduler(self) -> Scheduler:
        from sealpost.sequences.tasks import Scheduler

        return Scheduler(self.sequences, also=(self.archive_scheduled,))

    @cached_property
    def sequence_follower(self) -> Follower:
        from sealpost.sequences.tasks import Follower

        return Follower(self.sequences, self.outbox)

    @cached_property
    def sequences_parts(self) -> SequencesParts:
        from sealpost.sequences.endpoints import SequencesParts

        tenants = self.tenants
        return SequencesParts(
            service=self.sequences,
            seal=self.seal_identity,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            tenant_name=lambda tenant_id: tenants.get(tenant_id).name,
        )

    def sequences_loops(self) -> list[Loop]:
        from sealpost.sequences import tasks

        if not self.settings.sequences_worker_enabled:
            return []
        return tasks.loops(self.sequence_scheduler, self.sequence_follower)

    def start_sequences(self) -> None:
        """The sequences' scheduler (due steps) and follower (stops from other domains)."""
        self.supervisor.start(self.sequences_loops())

    @cached_property
    def archive_blobs(self) -> BlobStorage:
        """The archive's own blob namespace: a purge after retention removes only archive
        blobs, never a communication's content with the same bytes."""
        return blob_storage(self.settings, "archive")

    @cached_property
    def archive(self) -> ArchiveService:
        """The mail archive: ingest once per tenant, threads, agents (issue 15)."""
        from sealpost.archive.repository import ArchiveRepository
        from sealpost.archive.service import ArchiveService

        return ArchiveService(
            ArchiveRepository(self.engine), self.archive_blobs, clock=lambda: self.clock()
        )

    @cached_property
    def archive_parts(self) -> ArchiveParts:
        from sealpost.archive.endpoints import ArchiveParts

        domain = self.settings.resolved_bounce_domain
        return ArchiveParts(
            service=self.archive,
            journal_address=lambda token: f"journal+{token}@{domain}",
        )

    @cached_property
    def archive_journal(self) -> ArchiveJournal:
        return ArchiveJournal(lambda: self.archive)

    @cached_property
    def archive_outgoing(self) -> OutgoingArchiver:
        """Archives each email Sealpost accepts (an outbox follower, docs/archive-journal.md)."""
        from sealpost.archive.outgoing import OutgoingArchiver

        return OutgoingArchiver(
            self.archive, self.outbox, ArchiveSentMail(self.communications, self.contents)
        )

    @cached_property
    def archive_mailboxes(self) -> MailboxService:
        """The archive's IMAP mailboxes: settings, cursors, state (issue 15)."""
        from sealpost.archive.mailboxes import MailboxRepository, MailboxService

        s = self.settings
        return MailboxService(
            MailboxRepository(self.engine),
            allow_private_networks=s.archive_imap_allow_private_networks,
            backoff_cap_seconds=s.archive_imap_backoff_max_seconds,
            clock=lambda: self.clock(),
        )

    @cached_property
    def archive_imap(self) -> ImapWorker:
        """Reads the due mailboxes into the archive (IDLE where offered, else polling)."""
        from sealpost.archive.imap import ImapPuller, ImapWorker

        s = self.settings
        puller = ImapPuller(
            self.archive_mailboxes,
            self.archive,
            timeout_seconds=s.archive_imap_timeout_seconds,
            poll_seconds=s.archive_imap_poll_seconds,
            idle_seconds=s.archive_imap_idle_seconds,
            allow_private_networks=s.archive_imap_allow_private_networks,
            ingest_threads=s.archive_imap_ingest_threads,
        )
        return ImapWorker(puller, concurrency=s.archive_imap_concurrency)

    @cached_property
    def archive_sla(self) -> SlaService:
        """Unanswered-mail alerts: policies, each thread's reply clock, the alert round; the
        tenant's own holidays from the deadlines' calendars."""
        from sealpost.archive.sla import SlaService
        from sealpost.archive.sla_repository import SlaRepository

        return SlaService(
            SlaRepository(self.engine),
            self.archive,
            calendars=lambda tenant_id, code: self.deadlines.calendar(tenant_id, code),
            clock=lambda: self.clock(),
        )

    @cached_property
    def archive_sla_parts(self) -> SlaParts:
        from sealpost.archive.sla_endpoints import SlaParts

        return SlaParts(sla=self.archive_sla, scheduled=self.archive_scheduled)

    @cached_property
    def archive_scheduled(self) -> ScheduledSendService:
        """Scheduled sends: sent by the sequences' scheduler round (``sequence_scheduler``)
        through communications' certified mailer."""
        from sealpost.archive.scheduled import ScheduledSendService
        from sealpost.archive.scheduled_repository import ScheduledRepository

        return ScheduledSendService(
            ScheduledRepository(self.engine),
            ArchiveSender(self.certified_mailer, self.senders),
            calendars=lambda tenant_id, code: self.deadlines.calendar(tenant_id, code),
            clock=lambda: self.clock(),
        )

    def archive_loops(self) -> list[Loop]:
        from sealpost.archive import imap, outgoing, tasks

        s = self.settings
        found: list[Loop] = []
        if s.archive_worker_enabled and s.archive_outgoing:
            found += outgoing.loops(self.archive_outgoing)
        if s.archive_imap_enabled:
            found += imap.loops(self.archive_imap)
        found += tasks.loops(self.archive_sla, s)
        found += self.archive_retention_loops()
        found += self.archive_search_loops()
        return found

    def start_archive(self) -> None:
        """The archive's loops: Sealpost's own sent mail into the archive (a follower), the
        IMAP pull, the unanswered-mail alerts, the retention purge, the search indexer, as
        settings enable them."""
        self.supervisor.start(self.archive_loops())

    @cached_property
    def archive_holds(self) -> HoldParts:
        """Legal holds, the retention purge and exports of the archive (issue 15)."""
        from sealpost.archive.export import ExportService
        from sealpost.archive.hold_endpoints import HoldParts
        from sealpost.archive.hold_repository import HoldRepository
        from sealpost.archive.holds import HoldService
        from sealpost.archive.queries import ColumnMatcher
        from sealpost.archive.retention import RetentionPurger
        from sealpost.archive.search import SearchMatcher

        repo = HoldRepository(self.engine)
        matcher = SearchMatcher(self.archive_search, ColumnMatcher(self.engine))
        holds = HoldService(repo, self.archive.repo, matcher, clock=lambda: self.clock())
        tenants = self.tenants
        exports = ExportService(
            repo,
            self.archive.repo,
            holds,
            matcher,
            self.ledger,
            self.archive_blobs,
            blob_storage(self.settings, "archive-exports"),
            seal=self.seal_identity,
            timestamper=self.timestamper,
            trust_roots=self.trust_roots,
            tenant_name=lambda tenant_id: tenants.get(tenant_id).name,
            clock=lambda: self.clock(),
        )
        purger = RetentionPurger(
            repo,
            self.archive.repo,
            holds,
            self.archive_blobs,
            forget=self.archive_search.forget_in,
            clock=lambda: self.clock(),
        )
        return HoldParts(holds=holds, exports=exports, purger=purger)

    def archive_retention_loops(self) -> list[Loop]:
        from sealpost.archive import retention

        parts = self.archive_holds

        def step() -> None:
            parts.purger.purge_due()
            parts.exports.remove_stale()

        return retention.loops(step, self.settings)

    @cached_property
    def archive_search(self) -> ArchiveSearch:
        """Full-text search of the archive and its indexer (issue 15)."""
        from sealpost.archive.extract import Extractor
        from sealpost.archive.search import ArchiveSearch, pdf_limits

        return ArchiveSearch(self.engine, self.archive_blobs, Extractor(pdf_limits(self.settings)))

    @cached_property
    def archive_search_parts(self) -> SearchParts:
        from sealpost.archive.search_api import SearchParts

        return SearchParts(search=self.archive_search, clock=lambda: self.clock())

    def archive_search_loops(self) -> list[Loop]:
        from sealpost.archive.search import indexer_loops

        return indexer_loops(self.archive_search, self.settings)

    def pickup_loops(self) -> list[Loop]:
        from sealpost.pickup import tasks

        return tasks.loops(self.pickup, self.settings)

    def sms_loops(self) -> list[Loop]:
        from sealpost.sms import tasks

        s = self.settings
        found = []
        if s.sms_sender_enabled:
            found += tasks.loops(
                self.sms_senders, self.sms, confirm_interval_seconds=s.sms_confirm_interval_seconds
            )
        if s.certificates_enabled:
            found += tasks.certificate_loops(self.sms_parts.certificates)
        return found

    def start_sms(self) -> None:
        """The SMS sender (with the operator adapter SMS_PROVIDER names), receipt clock and
        certificate issuer, as settings enable them."""
        self.supervisor.start(self.sms_loops())

    def start_email(self) -> None:
        """SMTP listeners, delivery worker, certificate issuer and pickup worker, as settings
        enable them."""
        if self.settings.smtp_enabled:
            self.start_smtp()
        self.supervisor.start(self.communications_loops())
        self.supervisor.start(self.pickup_loops())

    def start_signing(self) -> None:
        """The signature worker (any number may run: each step is compare-and-set)."""
        self.supervisor.start(self.signatures_loops())

    def start_events(self) -> None:
        """The events dispatcher (one active by lease) and the webhook sender, as enabled."""
        self.supervisor.start(self.events_loops())
        self.supervisor.start(self.deadlines_loops())

    def start_background(self) -> None:
        """The sequencer (when this process may sequence)."""
        self.supervisor.start(self.ledger_loops())

    def stop_accepting(self) -> None:
        """Graceful shutdown, first step: the SMTP listeners close and their idle sessions
        get a 421; a transaction under way may finish (:meth:`stop_background` waits)."""
        if self._smtp is not None:
            self._smtp.stop_accepting()

    def release_leases(self, running: Collection[str] = ()) -> None:
        """Release every lease this process may hold (shutting down, or forced to exit):
        the sequencer's and the events dispatcher's, the deliveries and webhook deliveries
        it claimed, so another process takes over at once instead of after expiry.  Each is
        fenced on this process's own holder name; a failure is logged (the lease expires).

        The leases of a loop named in ``running`` (its thread still finishing its work past
        the bound) are kept: released, another process would redo that work while this one
        still does it; they expire, as after a crash."""
        from sealpost.db import leases
        from sealpost.events.outbox import DISPATCHER_LEASE

        parts = self.__dict__
        releases: list[tuple[str, Callable[[], object]]] = []
        if "sequencer" in parts:
            releases.append(
                ("sequencer", lambda: self.log_storage.release_lease(self.sequencer.holder))
            )
        if "dispatcher" in parts:
            releases.append(
                (
                    "events dispatcher",
                    lambda: leases.release(self.engine, DISPATCHER_LEASE, self.dispatcher.holder),
                )
            )
        if "delivery" in parts:
            releases.append(
                (
                    "deliveries",
                    lambda: self.communications.release_leases(
                        self.delivery.owner, self.delivery.unstarted
                    ),
                )
            )
        if "webhook_sender" in parts:
            releases.append(
                (
                    "webhook deliveries",
                    lambda: self.webhook_queue.release(self.webhook_sender.owner),
                )
            )
        kept = {name for name, _ in releases if _LEASE_LOOPS[name] in running}
        if kept:
            log.warning("serve.leases_kept", leases=sorted(kept), reason="work still running")
        for name, release in releases:
            if name in kept:
                continue
            try:
                release()
            except Exception as exc:  # the database is away: the lease expires by itself
                log.warning("serve.lease_release_failed", lease=name, error=repr(exc))

    def stop_background(self, timeout: float = 10.0) -> None:
        """Stop every loop, waiting up to ``timeout`` s in all for the SMTP transactions and
        the work in flight (deliveries, webhook POSTs, the batch being sealed); then release
        the leases of the loops that stopped and close.  The loops' own waits end by one
        deadline (:class:`sealpost.loops.StopEvent`), a second before this one's."""
        deadline = time.monotonic() + timeout
        # the loops finish by then, leaving time to release the leases and close
        loops_deadline = deadline - min(1.0, timeout / 4)
        self.stop_accepting()
        self.supervisor.stopping.stop_by(loops_deadline)
        self.work_available.set()
        self.webhooks_due.set()
        self.sms_due.set()
        if "engine" in self.__dict__:  # the dispatcher waits on it: wake it to stop
            from sealpost.events.outbox import committed_signal

            committed_signal(self.engine).set()
        if self._smtp is not None:
            # half of what is left at most: a client trickling its message does not hold
            # up the rest of the stop (cut, it sends again: it had no reply)
            self._smtp.drain(max((loops_deadline - time.monotonic()) / 2, 0.0))
            self._smtp.close()
            self._smtp = None
        if "submissions" in self.__dict__:
            self.submissions.close()
        if "pdf_intake" in self.__dict__:
            self.pdf_intake.close()
        self.supervisor.stop(max(loops_deadline - time.monotonic(), 0.0))
        self.release_leases(self.supervisor.running())
        provider = self.__dict__.get("sms_provider")
        if provider is not None:  # after the sender stopped: nothing is submitting now
            provider.close()
        if "sms" in self.__dict__:  # after the adapter: no receipt is on its way in
            self.sms.close()
        sealer = self.__dict__.get("certificate_sealer")
        if sealer is not None:  # after the issuer stopped: nothing is submitting now
            sealer.close()


_LEASE_LOOPS = {
    "sequencer": "sequencer",
    "events dispatcher": "events",
    "deliveries": "delivery",
    "webhook deliveries": "webhooks",
}
"""Each lease :meth:`Sealpost.release_leases` frees, and the loop whose work it covers."""


def sealing_keys(settings: Settings) -> SealingKeys:
    """A certificate worker process's seal key, timestamper and roots, from the server's
    settings (:class:`sealpost.certificates.sealer.ProcessSealer`: picklable as a partial)."""
    from sealpost.certificates.sealer import SealingKeys

    sealpost = build(settings, prepare=False)
    return SealingKeys(sealpost.seal_identity, sealpost.timestamper, sealpost.trust_roots)


def build(settings: Settings | None = None, *, prepare: bool = True) -> Sealpost:
    """A Sealpost whose keys exist and whose schema is current (``prepare=False`` skips both).

    Installs the process-wide asn1crypto fix first (:func:`sealpost.pki.asn1.install`,
    idempotent), so that every embedding of Sealpost signs and seals with it."""
    asn1.install()
    sealpost = Sealpost(settings or Settings())
    if prepare:
        ensure_local_keys(sealpost.settings)
        sealpost.migrate()
        try:
            ensure_note_key(sealpost.settings, sealpost.log_storage)
            if sealpost.settings.sequencer_enabled:
                _ = sealpost.note_signer  # a note key that is not the log's: refuse to start
        except Exception:
            sealpost.engine.dispose()
            raise
    return sealpost
