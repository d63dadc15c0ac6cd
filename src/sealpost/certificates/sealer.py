"""Rendering and sealing certificates, in this thread or in worker processes.

Rendering a certificate (fpdf2) and sealing it (pyHanko: CMS signature, two RFC 3161
timestamps, the DSS) is pure CPU in Python: in one process it holds the GIL against the API,
the SMTP listeners and the sequencer, and one process uses one core whatever the machine has.
:class:`ProcessSealer` runs that work in a pool of worker processes, each holding its own copy
of the seal key and timestamper (built once, at the worker's start, from the same settings);
the gathering of the evidence before, and the storing and recording after, stay with the
caller, in the database's process.

Either way the certificate's time (``issued_at``, printed on it, in its metadata and in the
CertificateIssued record) is the moment its evidence was gathered: the certificate says it is
an account of every event recorded, which is true as of that moment, not of a later one (an
event recorded while it waited for a worker is in the next version).  :class:`SealedPdf`
carries it back, so the record and the API use that same time.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography import x509
from fpdf import FPDF

from sealpost.certificates.fonts import close_fonts, register_fonts
from sealpost.certificates.model import CertificateData
from sealpost.certificates.render import render_certificate
from sealpost.certificates.seal import seal_pdf
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity


@dataclass(frozen=True)
class SealingKeys:
    """What sealing needs: the seal identity, the timestamper and the roots to check both."""

    seal: SigningIdentity
    timestamper: TimeStamper
    trust_roots: Sequence[x509.Certificate]


@dataclass(frozen=True)
class SealedPdf:
    pdf: bytes
    issued_at: datetime
    """The certificate's one time: when its evidence was gathered (see the module docstring)."""


def render_and_seal(
    data: CertificateData, keys: SealingKeys, *, reason: str, location: str | None
) -> SealedPdf:
    """The certificate PDF, sealed PAdES B-LTA, issued as of ``data.issued_at``."""
    issued_at = data.issued_at
    pdf = seal_pdf(
        render_certificate(data),
        seal=keys.seal,
        timestamper=keys.timestamper,
        trust_roots=keys.trust_roots,
        reason=reason,
        location=location,
    )
    return SealedPdf(pdf, issued_at)


class Sealer(Protocol):
    def submit(
        self, data: CertificateData, *, reason: str, location: str | None
    ) -> Future[SealedPdf]: ...

    def close(self) -> None: ...


class InlineSealer:
    """Renders and seals in the calling thread (tests, on-demand issuing, one-off tools)."""

    def __init__(self, keys: SealingKeys) -> None:
        self.keys = keys

    def submit(
        self, data: CertificateData, *, reason: str, location: str | None
    ) -> Future[SealedPdf]:
        future: Future[SealedPdf] = Future()
        try:
            future.set_result(render_and_seal(data, self.keys, reason=reason, location=location))
        except BaseException as exc:  # the caller sees it at .result(), as from a pool
            future.set_exception(exc)
        return future

    def close(self) -> None:
        return None


_worker_keys: SealingKeys | None = None


def _start_worker(load_keys: Callable[[], SealingKeys]) -> None:
    """Load the keys, and parse the fonts now rather than in the first certificate.  A worker
    whose server was killed (SIGKILL: no shutdown) exits within seconds instead of waiting on
    its task queue forever."""
    global _worker_keys
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _worker_keys = load_keys()
    pdf = FPDF()
    register_fonts(pdf)
    close_fonts(pdf)


def _exit_with(parent: int) -> None:
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os._exit(0)


def _in_worker(data: CertificateData, reason: str, location: str | None) -> SealedPdf:
    assert _worker_keys is not None, "the worker's initializer loads the keys"
    return render_and_seal(data, _worker_keys, reason=reason, location=location)


class ProcessSealer:
    """A pool of ``processes`` workers (spawned: forking a threaded server is unsafe), started
    on first use; ``load_keys`` (picklable: a module-level function, a partial of one) builds
    each worker's :class:`SealingKeys`."""

    def __init__(self, load_keys: Callable[[], SealingKeys], processes: int | None = None) -> None:
        self.load_keys = load_keys
        self.processes = processes or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.load_keys,),
            )
        return self._pool

    def submit(
        self, data: CertificateData, *, reason: str, location: str | None
    ) -> Future[SealedPdf]:
        try:
            return self._executor().submit(_in_worker, data, reason, location)
        except BrokenProcessPool:  # a worker died (OOM killer...): a new pool, once
            self._pool = None
            return self._executor().submit(_in_worker, data, reason, location)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
