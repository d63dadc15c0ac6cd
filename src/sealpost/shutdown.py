"""Graceful shutdown of ``sealpost serve``: the first SIGTERM (or SIGINT) asks, a second one
or the bound forces.

What a service manager expects (systemd's ``KillSignal=SIGTERM`` then ``SIGKILL`` after
``TimeoutStopSec``; ``docker stop`` after ``stop_grace_period``): on the first signal the
process stops accepting, lets the work in flight finish within
``SEALPOST_SHUTDOWN_TIMEOUT_SECONDS``, releases its leases and exits 0.  A second signal, or
the bound passing, releases what it can at once (``on_force``, itself bounded) and exits 1:
work still in flight is then retried elsewhere, as after a crash, but no lease is left to
expire.

Nothing here logs through structlog inside a signal handler (its per-file lock is not
reentrant: a handler interrupting a log line would hang): the handler only notes the time and
writes one byte to a pipe; threads started beforehand log, arm the bound and force.  The
forced exit writes its one line with ``os.write`` and exits within ``RELEASE_SECONDS`` even
if stderr blocks.  One exit path (:meth:`Shutdown.exit`) under a lock: the first to exit
wins, and an exit after the bound passed is a forced one (code 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from sealpost.logging import get_logger

log = get_logger(__name__)

FORCED_EXIT_CODE = 1
RELEASE_SECONDS = 5.0
"""How long a forced exit waits for ``on_force`` (the database may be the reason it hangs)."""

_REQUEST, _FORCE = 1, 2


class Shutdown:
    """The signal handlers, the bound and the exit of one ``serve`` process."""

    def __init__(self, timeout_seconds: float, *, on_force: Callable[[], None]) -> None:
        self.timeout_seconds = timeout_seconds
        self.on_force = on_force
        self.requested = threading.Event()
        """Set (by a thread, soon after the first signal): stop accepting, finish, release,
        exit."""
        self.deadline: float | None = None
        """When the bound passes (``time.monotonic()``), from the first signal on."""
        self._reason = ""
        self._exit_lock = threading.Lock()
        self._read, self._write = os.pipe()
        self._started = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (call from the main thread, before starting anything)."""
        if not self._started:
            self._started = True
            for target, name in (
                (self._watch, "sealpost-signals"),
                (self._bound, "sealpost-bound"),
                (self._announce, "sealpost-stopping"),
            ):
                threading.Thread(target=target, name=name, daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def request(self, reason: str) -> None:
        """Begin a graceful stop (as the first signal does) and start the bound.  Safe in a
        signal handler: no lock, no log."""
        if self.deadline is not None:
            return
        self._reason = reason
        self.deadline = time.monotonic() + self.timeout_seconds
        if self._started:
            os.write(self._write, bytes([_REQUEST, 0]))
        else:  # not installed (an embedding): no thread to wake
            self.requested.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.deadline is None:
            self.request(signal.Signals(signum).name)
        else:
            os.write(self._write, bytes([_FORCE, signum]))

    def _watch(self) -> None:
        """The signals' thread: the first request sets :attr:`requested`, a second forces."""
        while True:
            kind, signum = os.read(self._read, 2)
            if kind == _REQUEST:
                self.requested.set()
            else:
                self.force(f"a second {signal.Signals(signum).name}")

    def _bound(self) -> None:
        """Armed before anything is logged: the bound passing forces the exit."""
        self.requested.wait()
        assert self.deadline is not None
        time.sleep(max(self.deadline - time.monotonic(), 0.0))
        self.force("the bound passed")

    def _announce(self) -> None:
        self.requested.wait()
        log.info("serve.stopping", reason=self._reason, bound_seconds=self.timeout_seconds)

    def bound_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def exit(self, code: int, *, last_words: Callable[[], None] | None = None) -> NoReturn:
        """The one way out (serve's own, and :meth:`force`'s): the first caller wins.  Past
        the bound the exit is a forced one (code 1, ``serve.forced_exit``), else
        ``last_words`` (a log line) and ``code``."""
        with self._exit_lock:  # held by force(): it exits, this waits for that
            if self.bound_passed():
                _write_line("serve.forced_exit", "the bound passed")
                os._exit(FORCED_EXIT_CODE)
            if last_words is not None:
                last_words()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def force(self, reason: str) -> NoReturn:
        """Release what can be released within ``RELEASE_SECONDS``, then exit (code 1) at
        once; if another exit is under way, that one (if it does not hang)."""
        if not self._exit_lock.acquire(timeout=RELEASE_SECONDS):
            os._exit(FORCED_EXIT_CODE)  # the other exit hangs (a blocked stderr)
        _write_line("serve.forced_exit", reason)
        releasing = threading.Thread(target=self._release, name="sealpost-release", daemon=True)
        releasing.start()
        releasing.join(RELEASE_SECONDS)
        os._exit(FORCED_EXIT_CODE)

    def _release(self) -> None:
        try:
            self.on_force()
        except Exception as exc:  # exiting anyway: the leases expire by themselves
            log.error("serve.release_failed", error=repr(exc))


def _write_line(event: str, reason: str) -> None:
    """One JSON log line on stderr with a plain ``write(2)``: no logger lock to wait for, and
    a stderr that does not drain holds up the exit one second at most (the line is lost)."""
    line = (json.dumps({"event": event, "level": "error", "reason": reason}) + "\n").encode()

    def write() -> None:
        with contextlib.suppress(OSError):
            os.write(2, line)

    writer = threading.Thread(target=write, name="sealpost-last-line", daemon=True)
    writer.start()
    writer.join(1.0)
