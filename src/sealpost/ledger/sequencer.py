"""The sequencer: the single writer that integrates pending records into signed tree heads.

Sealing is per batch, not per record: that is what lets the ledger scale.  Every
``window`` the lease holder takes the pending records (oldest first), extends the Merkle tree,
signs the checkpoint with the seal key, has the signature timestamped (RFC 3161), and writes
leaves, nodes and head in one transaction that first checks the tree did not move
(compare-and-set on the size).  Signing and timestamping happen *outside* the database
transaction so a slow TSA never blocks appends; if the process dies in between, nothing was
written and the same records are sealed by the next batch: nothing is ever sealed twice with
different contents.  A head whose time does not move forward is refused (clock went back).

Bound on delay: a record committed at t is in a head by t + window + the time to seal one
batch (~tens of ms with the embedded TSA), i.e. under 1 s with the default 200 ms window.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sealpost import metrics
from sealpost.ledger import merkle
from sealpost.ledger.errors import NoteKeyMismatch, SequencerError
from sealpost.ledger.note import NoteSigner
from sealpost.ledger.storage import LogStorage
from sealpost.ledger.timestamps import TimeStamper
from sealpost.ledger.tree_head import Checkpoint, SignedTreeHead
from sealpost.logging import get_logger
from sealpost.loops import round_failed, round_ok
from sealpost.pki.keys import SigningIdentity

log = get_logger(__name__)


@dataclass(frozen=True)
class HeadSealer:
    """Turns a (size, root) into a signed, timestamped tree head."""

    origin: str
    seal: SigningIdentity
    timestamper: TimeStamper
    note_signer: NoteSigner | None = None
    """The log's Ed25519 key: each head is also signed as a C2SP signed note, here, where the
    seal signs it, so only the sequencer ever holds a key that can sign a checkpoint."""

    def seal_head(self, tree_size: int, root_hash: bytes, moment: datetime) -> SignedTreeHead:
        checkpoint = Checkpoint(self.origin, tree_size, root_hash, moment)
        signature = self.seal.sign(checkpoint.to_bytes())
        note = None if self.note_signer is None else self.note_signer.sign(checkpoint.to_text())
        token = self.timestamper.stamp(signature)
        return SignedTreeHead(
            checkpoint=checkpoint,
            signature=signature,
            signature_algorithm=self.seal.signature_algorithm,
            timestamp_token=token,
            seal_chain_pem=tuple(self.seal.chain_pem()),
            note_signature=note,
        )


class Sequencer:
    """Integrates batches; run :meth:`run` in one thread of the process holding the lease."""

    def __init__(
        self,
        storage: LogStorage,
        sealer: HeadSealer,
        *,
        max_batch: int = 50_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        holder: str | None = None,
    ) -> None:
        self.storage = storage
        self.sealer = sealer
        self.max_batch = max_batch
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._note_key_confirmed = False
        """Set once the log's heads are known to be signed by this sequencer's note key."""

    def check_note_key(self) -> None:
        """Raise NoteKeyMismatch unless this sequencer's note key is the log's: the key ID of
        the latest head carrying a note signature (none yet: a fresh log, any key will do).

        Monitors and witnesses pin the log's verifier key; heads signed by another key (a
        sequencer host with a key of its own, an emptied keys directory) would change the log's
        identity, and the X.509 seal must not go on alone either: nothing is sealed."""
        if self._note_key_confirmed:
            return
        expected = self.storage.note_key_id()
        signer = self.sealer.note_signer
        if expected is None:
            return
        if signer is None:
            raise NoteKeyMismatch(
                f"the log's heads are signed as notes by key id {expected.hex()}, and this "
                "sequencer has no note key: it does not seal"
            )
        own = signer.verifier.key_id
        if own != expected:
            raise NoteKeyMismatch(
                f"this sequencer's note key (key id {own.hex()}, name {signer.name}) is not the "
                f"log's (key id {expected.hex()}, the latest head's note signature): it does "
                "not seal.  Give every sequencer candidate the log's key (SEALPOST_LOG_NOTE_KEY "
                "or a shared keys directory)"
            )
        self._note_key_confirmed = True

    def seal_pending(self) -> SignedTreeHead | None:
        """Seal one batch of pending records; None when nothing was pending."""
        state = self.storage.state()
        pending = self.storage.pending(self.max_batch)
        if not pending:
            return None
        # after reading the state: a head another sequencer wrote since then either shows
        # here or makes the compare-and-set of ``integrate`` fail
        self.check_note_key()
        started = time.perf_counter()
        moment = self.clock()
        if state.head_time is not None and moment <= state.head_time:
            raise SequencerError(
                f"refusing to sign a head at {moment.isoformat()}: the previous head is at "
                f"{state.head_time.isoformat()} and time must move forward"
            )
        frontier, nodes = merkle.append(
            state.frontier, state.tree_size, [leaf.leaf_hash for leaf in pending]
        )
        new_size = state.tree_size + len(pending)
        head = self.sealer.seal_head(new_size, merkle.root_from_frontier(frontier), moment)
        self.storage.integrate(
            expected_size=state.tree_size,
            leaves=pending,
            nodes=[n for n in nodes if n[0] > 0],
            frontier=frontier,
            head=head,
        )
        metrics.SEAL_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.SEAL_BATCH_RECORDS.observe(len(pending))
        log.debug("ledger.sealed", tree_size=new_size, batch=len(pending))
        return head

    def seal_all(self) -> list[SignedTreeHead]:
        """Seal until nothing is pending (used at start-up and by ``sealpost ledger seal``)."""
        heads = []
        while (head := self.seal_pending()) is not None:
            heads.append(head)
        return heads

    def run(self, stop: threading.Event, *, window_seconds: float, lease_seconds: float) -> None:
        """Seal every ``window_seconds`` while holding the lease, until ``stop`` is set: one
        batch per window, or back to back while a backlog of full batches waits.

        A failure (TSA or database down) is retried with exponential backoff up to 10 s, so an
        outage neither kills the loop nor floods the log; records wait, committed, meanwhile.
        """
        backoff = 0.0
        try:
            while not stop.is_set():
                if not self.storage.acquire_lease(self.holder, lease_seconds):
                    stop.wait(min(lease_seconds / 2, 1.0))
                    continue
                started = time.monotonic()
                try:
                    head = self.seal_pending()
                    backoff = 0.0
                    round_ok()
                except NoteKeyMismatch as exc:
                    # not retried while holding the lease: release it (finally) so that a
                    # sequencer with the log's key takes over, and let the supervisor report it
                    log.error("ledger.note_key_mismatch", reason=exc.message)
                    round_failed(exc)
                    raise
                except SequencerError as exc:
                    log.warning("ledger.seal_refused", reason=exc.message)
                    head, backoff = None, min(max(backoff * 2, window_seconds), 10.0)
                except Exception as exc:  # a TSA or database outage must not kill the loop
                    backoff = min(max(backoff * 2, window_seconds), 10.0)
                    log.error("ledger.seal_failed", error=repr(exc), retry_in=backoff)
                    round_failed(exc)
                    head = None
                full = self.max_batch  # counted no further: a backlog may hold millions
                if head is not None and self.storage.pending_count(full) >= full:
                    continue  # a backlog: seal the next full batch at once
                # one head per window under a steady stream: sealing again as soon as a few
                # more records arrive would sign and timestamp many tiny batches
                stop.wait(max((backoff or window_seconds) - (time.monotonic() - started), 0.0))
        finally:
            try:
                self.storage.release_lease(self.holder)
            except Exception as exc:  # the lease expires by itself anyway
                log.warning("ledger.lease_release_failed", error=repr(exc))
