"""Composition root: builds Sealpost's parts from settings, once per process.

Every entry point (``sealpost serve``, the CLI commands, the tests) gets its parts here, so a
part is wired the same way everywhere.  Nothing here does work at import time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

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
