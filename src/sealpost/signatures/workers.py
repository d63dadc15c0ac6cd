"""A small pool of worker processes that run one task at a time under hard limits.

What it is for: reading untrusted documents, whose cost their author chooses (intake.py says
how much).  Each task runs in a worker process under three limits:

- **wall clock**: the caller waits ``timeout_seconds``, then kills the worker (SIGKILL);
- **CPU time**: ``RLIMIT_CPU``, the worker's soft limit raised before each task to what it has
  used so far plus the timeout: the backstop that ends a task whose caller is gone (the kernel
  sends SIGXCPU);
- **address space**: ``RLIMIT_AS``, set once when the worker starts to what it already maps
  plus ``memory_mb`` (Python raises MemoryError; a C library such as PDFium aborts the process,
  or skips what it cannot allocate).  Counted from what the worker maps at start, not from 0:
  the preloaded modules grow as domains add dependencies, and a fixed total silently shrank
  the room left, until PDFium drew an image-heavy page blank instead of reaching its time
  limit.  Core dumps are off (``RLIMIT_CORE`` 0): a
  worker that ends on a signal must not write its memory to disk.

A task that hits a limit raises :class:`LimitExceeded` in the caller; its worker is replaced at
the next task, and the other workers, running other callers' tasks, are not touched.  A worker
also retires after :data:`TASKS_PER_WORKER` tasks (like ``max_tasks_per_child``), and after
a task that took it near its memory limit (its heap may be in any state).

Why not :class:`concurrent.futures.ProcessPoolExecutor`: it cannot stop one running task (a
running future cannot be cancelled, and which process runs it is hidden), and a worker that
dies (killed by a limit) breaks the whole pool: every other caller's task in flight fails with
``BrokenProcessPool``.  Here each worker has its own pipe and runs one task at a time, so the
caller that waits for it is the one that kills it.

Why the ``forkserver`` start method: the server is threaded (uvicorn's thread pool, the SMTP
listeners, the background loops); ``fork`` would copy it with locks held by other threads at
that instant (logging, the SQLite writer lock, PDFium's lock) and the child could deadlock on
them; ``spawn`` starts a clean interpreter but pays every import again for each worker (2.5 s
for pyHanko and PDFium on the reference machine).  The fork server is started once, single-
threaded, with the task module preloaded; each worker is a fork of it: clean, and ready in
milliseconds.  (Where ``forkserver`` does not exist, ``spawn`` is used.)

The worker's answers are bytes (a JSON header and a raw payload), never pickles: a process that
has just read a hostile document is not trusted to hand the server objects to rebuild.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from sealpost.errors import SealpostError

TASKS_PER_WORKER = 200
"""Tasks a worker runs before it is replaced: what a long-lived reader may accumulate (caches,
a fragmented heap) stays bounded."""

MAX_REPLY_BYTES = 256 * 1024 * 1024
"""Largest answer read from a worker."""

QUEUE_PER_WORKER = 4
"""Callers that may wait for a free worker, per worker; one more is answered :class:`Busy` at
once.  Each waiting caller holds a thread of the server (uvicorn's pool has 40): a burst of slow
documents must not take them all."""

START_SECONDS = 60.0
"""How long a new worker may take to be ready: its start is not counted in a task's time."""

READY = b"ready"

NEAR_LIMIT_BYTES = 32 * 1024 * 1024
"""A worker whose address space came this close to its limit retires after the task, and the
task's failure, whatever it is, counts as the memory limit: short of memory, CPython and the
readers fail in many ways besides MemoryError (a SystemError, a parser error, a crash)."""

Task = Callable[..., tuple[Any, bytes]]
"""A module-level function run in a worker: its JSON-able result and a raw payload (b"" when
there is none).  It may raise :class:`sealpost.errors.SealpostError`, whose code, message and
problem members travel back (:class:`Refused`)."""


@dataclass(frozen=True)
class Limits:
    """What one task may use."""

    timeout_seconds: float
    """Wall clock, from the moment the worker has the task."""
    memory_mb: int
    """Address space a worker may add to what it maps when it starts (RLIMIT_AS), in MiB."""
    workers: int
    """Worker processes at most, i.e. tasks running at once; a caller waits for a free one
    at most ``timeout_seconds``, behind at most :data:`QUEUE_PER_WORKER` per worker (then
    :class:`Busy`)."""
    cpu_seconds: int | None = None
    """CPU time per task (RLIMIT_CPU); by default the wall-clock bound rounded up, plus one
    second: a single-threaded task cannot use more CPU than wall-clock time, so the wall clock
    fires first, and this ends a task nobody waits for any more."""

    @property
    def task_cpu_seconds(self) -> int:
        if self.cpu_seconds is not None:
            return self.cpu_seconds
        return math.ceil(self.timeout_seconds) + 1


class LimitExceeded(Exception):
    """A task was stopped by a limit: ``limit`` is ``"time"`` (wall clock or CPU) or
    ``"memory"`` (MemoryError, or the worker ended on a signal: a C library that cannot
    allocate aborts the process, and a crash cannot be told apart from it)."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit
        self.detail = detail


class Busy(Exception):
    """No worker became free: too many callers wait already, or every worker stayed busy for
    ``timeout_seconds``.  Retry later."""


class Refused(Exception):
    """A task's :class:`~sealpost.errors.SealpostError`, as it travels back (code, message,
    problem members): the caller rebuilds the error it knows by ``code``."""

    def __init__(self, code: str, message: str, members: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.members = members


class Fault(Exception):
    """A task failed with an unexpected exception (a bug, not the document): a server fault."""


# --- the worker side ------------------------------------------------------------------------


def _mapped_bytes() -> int:
    """This process's address space now (``/proc/self/statm``'s first field, in pages); 0
    where there is no procfs (the limit is then ``memory_mb`` in all)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _serve(conn: Connection, memory_bytes: int, cpu_seconds: int) -> None:
    """A worker's life: set its limits, then run tasks until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which closes pipes
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = _mapped_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send_bytes(READY)
    while True:
        try:
            received = conn.recv()
        except (EOFError, OSError):
            return
        if received is None:
            return
        task, args = received
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(used.ru_utime + used.ru_stime) + cpu_seconds
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        try:
            value, payload = task(*args)
            header: dict[str, Any] = {"ok": value}
        except MemoryError:
            header, payload = {"limit": "memory"}, b""
        except SealpostError as exc:
            refused = {"code": exc.code, "message": exc.message, "members": exc.extensions()}
            header, payload = {"refused": refused}, b""
        except Exception as exc:
            header, payload = {"fault": f"{type(exc).__name__}: {exc}"[:500]}, b""
        retire = "limit" in header or _peak_bytes() >= limit - NEAR_LIMIT_BYTES
        if retire and "ok" not in header:
            header = {"limit": "memory"}  # whatever the failure says, memory ran out first
        try:
            encoded = json.dumps(header).encode()
            conn.send_bytes(len(encoded).to_bytes(4, "big") + encoded + payload)
        except MemoryError:
            return
        if retire:
            return


def _peak_bytes() -> int:
    """The most address space this process has used (Linux's VmPeak; 0 where unknown)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# --- the caller side ------------------------------------------------------------------------


class _Worker:
    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.tasks = 0
        self.reaped = False


class LimitedWorkers:
    """At most ``limits.workers`` worker processes, started when first needed (or by
    :meth:`start`), each running one task at a time under ``limits``.  Thread-safe: any number
    of threads call :meth:`run`."""

    def __init__(self, limits: Limits, *, preload: str, name: str = "sealpost-worker") -> None:
        """``preload``: the module the fork server imports once for every worker (the one that
        defines the tasks)."""
        self.limits = limits
        self.name = name
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        if self._context.get_start_method() == "forkserver":
            # __main__ as well, as the default list has it (Python 3.11's fork server never
            # imports it, so each worker runs the main script again, as __mp_main__, when it
            # starts: 0.1 s for the `sealpost` command; it answers READY after that)
            self._context.set_forkserver_preload(["__main__", preload])
        self._slots = threading.BoundedSemaphore(limits.workers)
        self._lock = threading.Lock()
        """Guards the idle list and every start, poll and join of a worker process: two
        threads polling one process would read its exit status twice (the second reads 255)."""
        self._idle: list[_Worker] = []
        self._waiting = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        """Callers waiting for a free worker now."""
        return self._waiting

    def start(self) -> None:
        """Start the workers now rather than at the first task (the very first start also
        starts the fork server, which imports the task module: seconds).  Meant for a server's
        start; it starts as many as are not idle already."""
        with self._lock:
            missing = self.limits.workers - len(self._idle)
        workers = [self._new_worker() for _ in range(missing)]
        with self._lock:
            self._idle.extend(workers)

    def run(self, task: Task, *args: Any) -> tuple[Any, bytes]:
        """``task(*args)`` in a worker, under the limits: its result and payload.

        Raises :class:`LimitExceeded` (the worker is replaced), :class:`Refused` (the task
        refused its input), :class:`Busy` (no worker free within the timeout) or
        :class:`Fault` (the task failed unexpectedly).
        """
        queue = self.limits.workers * QUEUE_PER_WORKER
        with self._lock:
            if self._waiting >= queue:
                raise Busy(f"{queue} callers wait for a worker already")
            self._waiting += 1
        try:
            free = self._slots.acquire(timeout=self.limits.timeout_seconds)
        finally:
            with self._lock:
                self._waiting -= 1
        if not free:
            raise Busy(f"every worker stayed busy for {self.limits.timeout_seconds:g} s")
        try:
            worker = self._checkout()
            try:
                try:
                    worker.conn.send((task, args))
                except OSError:  # it died while idle (killed from outside): a fresh one
                    self._discard(worker)
                    worker = self._new_worker()
                    worker.conn.send((task, args))
                header, payload = self._answer(worker)
            except BaseException:
                self._discard(worker)
                raise
            if "limit" in header:
                self._discard(worker)  # it exits after a task short of memory anyway
            else:
                self._checkin(worker)
        finally:
            self._slots.release()
        if "ok" in header:
            return header["ok"], payload
        if "refused" in header:
            try:
                refused = header["refused"]
                code, message = str(refused["code"]), str(refused["message"])
                members = dict(refused["members"])
            except (KeyError, TypeError, ValueError):
                raise Fault("the worker's refusal is malformed") from None
            raise Refused(code, message, members)
        if "limit" in header:
            raise LimitExceeded("memory", "the task ran out of memory")
        raise Fault(str(header.get("fault", "the worker answered something unknown")))

    def close(self) -> None:
        """Stop the idle workers; a busy one stops when its task ends.  Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            self._stop(worker)

    # -- internals ---------------------------------------------------------------------------

    def _new_worker(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_serve,
            args=(child, self.limits.memory_mb * 1024 * 1024, self.limits.task_cpu_seconds),
            name=self.name,
            daemon=True,
        )
        with self._lock:
            process.start()
        child.close()
        worker = _Worker(process, parent)
        try:
            if parent.poll(START_SECONDS) and parent.recv_bytes(16) == READY:
                return worker
        except (EOFError, OSError):
            pass
        self._discard(worker)
        raise Fault(f"a worker process did not start within {START_SECONDS:g} s")

    def _checkout(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                self._reap(worker)
        return self._new_worker()

    def _checkin(self, worker: _Worker) -> None:
        worker.tasks += 1
        with self._lock:
            if not self._closed and worker.tasks < TASKS_PER_WORKER:
                self._idle.append(worker)
                return
        self._stop(worker)

    def _answer(self, worker: _Worker) -> tuple[dict[str, Any], bytes]:
        """Wait for the worker's answer to the task it was given, its end, or the timeout."""
        timeout = self.limits.timeout_seconds
        ready = wait([worker.conn, worker.process.sentinel], timeout)
        if not ready:
            raise LimitExceeded("time", f"no answer within {timeout:g} s")
        try:
            if worker.conn in ready or worker.conn.poll():
                message = worker.conn.recv_bytes(MAX_REPLY_BYTES)
                size = int.from_bytes(message[:4], "big")
                try:
                    header = json.loads(message[4 : 4 + size])
                except ValueError:
                    raise Fault("the worker's answer is not JSON") from None
                if not isinstance(header, dict):
                    raise Fault("the worker's answer is not a JSON object")
                return header, message[4 + size :]
        except (EOFError, OSError):  # it ended while answering: its exit status says why
            pass
        with self._lock:
            worker.process.join(5.0)
            exitcode = worker.process.exitcode
        raise _ended(exitcode)

    def _discard(self, worker: _Worker) -> None:
        """End a worker in an unknown state (stopped by a limit, timed out) and reap it."""
        with self._lock:
            if not worker.reaped and worker.process.is_alive():
                worker.process.kill()
            self._reap(worker)

    @staticmethod
    def _reap(worker: _Worker) -> None:
        """Close a worker's pipe and collect its exit status (under ``_lock``)."""
        if worker.reaped:
            return
        worker.conn.close()
        worker.process.join(5.0)
        if worker.process.exitcode is not None:
            worker.process.close()
            worker.reaped = True

    def _stop(self, worker: _Worker) -> None:
        """Ask a worker waiting for a task to exit; kill it if it does not."""
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with self._lock:
                if worker.reaped or not worker.process.is_alive():
                    break
            time.sleep(0.01)
        self._discard(worker)


def _ended(exitcode: int | None) -> LimitExceeded:
    """Why a worker ended without answering (by its exit status)."""
    if exitcode is not None and exitcode < 0:
        if -exitcode == signal.SIGXCPU:
            return LimitExceeded("time", "the CPU time limit ended it (SIGXCPU)")
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return LimitExceeded("memory", f"the worker ended on {name}")
    return LimitExceeded("memory", f"the worker exited with status {exitcode}")
