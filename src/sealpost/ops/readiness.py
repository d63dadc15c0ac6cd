"""Readiness: can this process do its job now (``/readyz``)?

Liveness (``/healthz``) says the process should be left running; readiness says it should
receive work: a load balancer takes an API replica out of its pool, an orchestrator waits
before sending traffic, while it answers 503.  Each check is named in the answer, errors by
type only (it answers anyone; the whole error is in the log):

* ``database``: a ``SELECT 1`` answers;
* ``blob_store``: the content store answers (and, on the filesystem, its directory is there,
  or can be made, and is writable);
* ``broker``: RabbitMQ answers the AMQP 0-9-1 protocol header with ``Connection.Start``
  (AMQP 0-9-1 §4.2.2), when this process publishes (``SEALPOST_AMQP_URL`` and the events
  dispatcher), and its publisher is not failing;
* ``loops``: the process started its background loops and none is failing
  (:meth:`sealpost.loops.LoopHealth.failing`);
* ``smtp``: the SMTP listeners accept connections, when this process runs them.

Checks run in parallel, each bounded by ``timeout`` seconds (an unreachable host must not
hang the probe).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import text

from sealpost.app import Sealpost
from sealpost.logging import get_logger

log = get_logger(__name__)

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
"""The protocol header a client sends first (AMQP 0-9-1 §4.2.2)."""
_NO_BLOB = "0" * 64


class NotReady(Exception):
    """A check's reason, shown as it is (no secret in it)."""


@dataclass(frozen=True)
class ReadinessReport:
    ready: bool
    checks: dict[str, str]
    """Check name → ``ok`` or why not."""

    def body(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": self.checks,
            "not_ready": sorted(k for k, v in self.checks.items() if v != "ok"),
        }


@dataclass
class Readiness:
    """The readiness checks of one process; ``started`` is set once its loops run."""

    sp: Sealpost
    timeout: float = 3.0
    started: threading.Event = field(default_factory=threading.Event)
    cache_seconds: float = 1.0
    """A report younger than this is answered again: probes come every few seconds, a flood
    of anonymous ``/readyz`` on the API port must not become a flood of database round trips
    and threads (one round of checks at a time, the others wait for it)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: tuple[float, ReadinessReport] | None = None
    _running: dict[str, Future[None]] = field(default_factory=dict)
    """A check that timed out and still runs is waited on again, never started twice: a
    database or store that hangs holds one thread per check, not one per request."""
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="sealpost-readyz")
    )

    def check(self) -> ReadinessReport:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.cache_seconds:
                return self._last[1]
            report = self._check()
            self._last = (time.monotonic(), report)
            return report

    def _check(self) -> ReadinessReport:
        checks: dict[str, Callable[[], None]] = {
            "database": self._database,
            "blob_store": self._blob_store,
            "loops": self._loops,
        }
        s = self.sp.settings
        if s.amqp_url and s.events_dispatcher_enabled:
            checks["broker"] = self._broker
        if self.sp.smtp_serving() is not None:  # this process started SMTP listeners
            checks["smtp"] = self._smtp
        results: dict[str, str] = {}
        futures: dict[str, Future[None]] = {}
        for name, run in checks.items():
            previous = self._running.get(name)
            futures[name] = (
                previous if previous is not None and not previous.done() else self._pool.submit(run)
            )
        self._running = futures
        deadline = time.monotonic() + self.timeout
        for name, future in futures.items():
            try:
                future.result(max(deadline - time.monotonic(), 0.0))
                results[name] = "ok"
            except FutureTimeout:
                results[name] = f"no answer within {self.timeout:g} s"
            except NotReady as exc:
                results[name] = str(exc)
            except Exception as exc:
                log.warning("readyz.check_failed", check=name, error=repr(exc))
                results[name] = f"unreachable ({type(exc).__name__})"
        return ReadinessReport(all(v == "ok" for v in results.values()), results)

    def _database(self) -> None:
        with self.sp.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _blob_store(self) -> None:
        blobs = self.sp.blobs
        root = getattr(blobs, "root", None)
        if root is not None:  # the filesystem store: made on first write, as the store does
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NotReady(f"its directory cannot be made ({type(exc).__name__})") from None
            if not os.access(root, os.W_OK | os.X_OK):
                raise NotReady("its directory is not writable")
        blobs.exists(_NO_BLOB)  # a round trip to the store (a HEAD on object storage)

    def _broker(self) -> None:
        url = urlsplit(self.sp.settings.amqp_url or "")
        port = url.port or (5671 if url.scheme == "amqps" else 5672)
        with socket.create_connection((url.hostname or "localhost", port), self.timeout) as sock:
            if url.scheme != "amqps":  # over TLS, the connection alone (no handshake here)
                sock.settimeout(self.timeout)
                sock.sendall(AMQP_HEADER)
                frame = sock.recv(7)
                # a method frame (type 1) on channel 0: Connection.Start
                if len(frame) < 7 or frame[0] != 1 or frame[1:3] != b"\x00\x00":
                    raise NotReady("it does not answer AMQP 0-9-1")
        failing = self.sp.amqp_unreachable_seconds()
        if failing is not None:
            raise NotReady(f"publishing has failed for {failing:.0f} s")

    def _loops(self) -> None:
        if not self.started.is_set():
            raise NotReady("not started yet")
        failing = [
            name
            for name, health in sorted(dict(self.sp.supervisor.health).items())
            if health.state != "running" or health.failing()
        ]
        if failing:
            raise NotReady("failing: " + ", ".join(failing))

    def _smtp(self) -> None:
        if not self.sp.smtp_serving():
            raise NotReady("the SMTP listeners do not accept connections")
