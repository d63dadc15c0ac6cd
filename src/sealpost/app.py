"""Composition root: builds Sealpost's parts from settings, once per process.

Every entry point (``sealpost serve``, the CLI commands, the tests) gets its parts here, so a
part is wired the same way everywhere.  Nothing here does work at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from sealpost.config import Settings
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.sequencer import HeadSealer, Sequencer
from sealpost.ledger.timestamps import EmbeddedTimeStamper, HttpTimeStamper, TimeStamper
from sealpost.logging import get_logger
from sealpost.pki.keys import SigningIdentity, init_keys, load_identity, load_pkcs12
from sealpost.pki.tsa import EmbeddedTSA
from sealpost.store import migrate
from sealpost.store.blobs import BlobStore
from sealpost.store.db import make_engine
from sealpost.store.ledger_storage import SqlLogStorage
from sealpost.store.tenants import TenantRepository

if TYPE_CHECKING:
    from cryptography import x509

    from sealpost.certificates.service import CertificateService
    from sealpost.email.delivery import DeliveryWorker
    from sealpost.email.smtp_server import SmtpListeners
    from sealpost.email.submission import SubmissionService
    from sealpost.email.verp import BounceAddresses
    from sealpost.events.dispatcher import EventDispatcher
    from sealpost.events.webhooks import WebhookSender
    from sealpost.signing.service import SignatureService
    from sealpost.store.communications import CommunicationRepository
    from sealpost.store.contents import ContentStore
    from sealpost.store.outbox import OutboxRepository
    from sealpost.store.senders import SenderRepository
    from sealpost.store.webhook_deliveries import DeliveryRepository
    from sealpost.store.webhooks import WebhookRepository

log = get_logger(__name__)


def ensure_local_keys(settings: Settings) -> None:
    """Create the embedded default's keys on first start (never overwrites existing ones)."""
    operator_seal = settings.seal_pkcs12 or (settings.seal_certificate and settings.seal_key)
    if operator_seal and settings.tsa_url:
        return
    keys_dir = settings.resolved_keys_dir
    if not (keys_dir / "seal.pem").exists():
        init_keys(keys_dir)
        log.info("keys.created", directory=str(keys_dir))


@dataclass
class Sealpost:
    """The parts of one Sealpost process."""

    settings: Settings
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    work_available: threading.Event = field(default_factory=threading.Event)
    """Set when new submissions commit, so the delivery worker wakes at once."""
    webhooks_due: threading.Event = field(default_factory=threading.Event)
    """Set when the dispatcher fans events out, so the webhook sender wakes at once."""
    _smtp: SmtpListeners | None = None
    smtp_ports: dict[str, int] = field(default_factory=dict)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(
            self.settings.resolved_database_url,
            sqlite_synchronous=self.settings.sqlite_synchronous,
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
    def blobs(self) -> BlobStore:
        return BlobStore(self.settings.resolved_blob_dir)

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
    def sequencer(self) -> Sequencer:
        sealer = HeadSealer(self.settings.ledger_origin, self.seal_identity, self.timestamper)
        return Sequencer(self.log_storage, sealer, max_batch=self.settings.batch_max_records)

    @cached_property
    def contents(self) -> ContentStore:
        from sealpost.store.contents import ContentStore

        return ContentStore(
            self.engine, self.blobs, inline_max_bytes=self.settings.content_inline_max_bytes
        )

    @cached_property
    def communications(self) -> CommunicationRepository:
        from sealpost.store.communications import CommunicationRepository

        return CommunicationRepository(self.engine)

    @cached_property
    def senders(self) -> SenderRepository:
        from sealpost.store.senders import SenderRepository

        return SenderRepository(self.engine)

    @cached_property
    def submissions(self) -> SubmissionService:
        from sealpost.email.submission import SubmissionService

        return SubmissionService(
            self.engine, self.contents, self.settings, on_commit=self.work_available.set
        )

    @cached_property
    def delivery(self) -> DeliveryWorker:
        from sealpost.email.delivery import DeliveryWorker

        return DeliveryWorker(
            repository=self.communications,
            contents=self.contents,
            senders=self.senders,
            settings=self.settings,
            return_paths=self.return_paths,
            wake=self.work_available,
        )

    @cached_property
    def outbox(self) -> OutboxRepository:
        from sealpost.store.outbox import OutboxRepository

        return OutboxRepository(self.engine)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        from sealpost.store.webhooks import WebhookRepository

        return WebhookRepository(self.engine)

    @cached_property
    def webhook_deliveries(self) -> DeliveryRepository:
        from sealpost.store.webhook_deliveries import DeliveryRepository

        return DeliveryRepository(self.engine)

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
            self.outbox, s, publisher=publisher, on_positioned=self.webhooks_due.set
        )

    @cached_property
    def webhook_sender(self) -> WebhookSender:
        from sealpost.events.webhooks import WebhookSender

        return WebhookSender(self.webhook_deliveries, self.settings, wake=self.webhooks_due)

    @cached_property
    def signatures(self) -> SignatureService:
        from sealpost.signing.service import SignatureService

        return SignatureService(self)

    @cached_property
    def return_paths(self) -> BounceAddresses:
        """Signed VERP return paths; every replica derives the same secret from the seal key."""
        from cryptography.hazmat.primitives import serialization

        from sealpost.email.verp import BounceAddresses, derive_secret

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
        from sealpost.certificates.service import CertificateService

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
        )

    def start_smtp(self) -> dict[str, int]:
        """Bind the SMTP listeners (submission, implicit TLS, inbound); returns their ports."""
        from sealpost.email.inbound import BounceProcessor, InboundHandler, inbound_factory
        from sealpost.email.smtp_server import (
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
        ports = {
            "submission": listeners.listen(
                submission_factory(handler, s, tls, implicit_tls=False),
                s.smtp_host,
                s.smtp_submission_port,
                reuse_port=shared,
            )
        }
        if s.smtp_tls_port is not None:
            ports["tls"] = listeners.listen(
                submission_factory(handler, s, tls, implicit_tls=True),
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
            )
            ports["inbound"] = listeners.listen(
                inbound_factory(inbound, s, tls),
                s.smtp_host,
                s.smtp_inbound_port,
                reuse_port=shared,
            )
        self.smtp_ports = ports
        return ports

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_email(self) -> None:
        """SMTP listeners, delivery worker and certificate issuer, as settings enable them."""
        import asyncio

        s = self.settings
        if s.smtp_enabled:
            self.start_smtp()
        if s.delivery_enabled:
            self._thread("sealpost-delivery", lambda: asyncio.run(self.delivery.run(self._stop)))
        if s.certificates_enabled:

            def issue_loop() -> None:
                while not self._stop.wait(1.0):
                    try:
                        self.certificates.issue_due()
                    except Exception as exc:  # database down: try again next round
                        log.error("certificates.loop_error", error=repr(exc))

            self._thread("sealpost-certificates", issue_loop)

    def start_signing(self) -> None:
        """The signature worker: expiries, reminders, signatures waiting for the TSA,
        finalisation.  Any number may run: each step is compare-and-set."""
        if not self.settings.signing_worker_enabled:
            return

        def loop() -> None:
            while not self._stop.wait(self.settings.signing_worker_interval_seconds):
                try:
                    self.signatures.run_due()
                except Exception as exc:  # database down: try again next round
                    log.error("signing.loop_error", error=repr(exc))

        self._thread("sealpost-signing", loop)

    def start_events(self) -> None:
        """The events dispatcher (one active by lease) and the webhook sender, as enabled."""
        import asyncio

        s = self.settings
        if s.events_dispatcher_enabled:
            self._thread("sealpost-events", lambda: asyncio.run(self.dispatcher.run(self._stop)))
        if s.webhooks_enabled:
            self._thread(
                "sealpost-webhooks", lambda: asyncio.run(self.webhook_sender.run(self._stop))
            )

    def start_background(self) -> None:
        """Start the sequencer thread (when this process may sequence)."""
        if not self.settings.sequencer_enabled:
            return
        thread = threading.Thread(
            target=self.sequencer.run,
            args=(self._stop,),
            kwargs={
                "window_seconds": self.settings.batch_window_ms / 1000,
                "lease_seconds": self.settings.sequencer_lease_seconds,
            },
            name="sealpost-sequencer",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def stop_background(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.work_available.set()
        self.webhooks_due.set()
        if "engine" in self.__dict__:  # the dispatcher waits on it: wake it to stop
            from sealpost.store.outbox import committed_signal

            committed_signal(self.engine).set()
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None
        if "submissions" in self.__dict__:
            self.submissions.close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._stop = threading.Event()


def build(settings: Settings | None = None, *, prepare: bool = True) -> Sealpost:
    """A Sealpost whose keys exist and whose schema is current (``prepare=False`` skips both)."""
    sealpost = Sealpost(settings or Settings())
    if prepare:
        ensure_local_keys(sealpost.settings)
        sealpost.migrate()
    return sealpost
