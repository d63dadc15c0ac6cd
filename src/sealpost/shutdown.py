"""Graceful shutdown of ``sealpost serve``: the first SIGTERM (or SIGINT) asks, a second one
or the bound forces.

What a service manager expects (systemd's ``KillSignal=SIGTERM`` then ``SIGKILL`` after
``TimeoutStopSec``; ``docker stop`` after ``stop_grace_period``): on the first signal the
process stops accepting, lets the work in flight finish within
``SEALPOST_SHUTDOWN_TIMEOUT_SECONDS``, releases its leases and exits 0.  A second signal, or
the bound passing, releases what it can at once (``on_force``, itself bounded) and exits 1:
work still in flight is then retried elsewhere, as after a crash, but no lease is left to
expire.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from sealpost.logging import get_logger

log = get_logger(__name__)

FORCED_EXIT_CODE = 1
RELEASE_SECONDS = 5.0
"""How long a forced exit waits for ``on_force`` (the database may be the reason it hangs)."""


class Shutdown:
    """The signal handlers and the bound of one ``serve`` process."""

    def __init__(self, timeout_seconds: float, *, on_force: Callable[[], None]) -> None:
        self.timeout_seconds = timeout_seconds
        self.on_force = on_force
        self.requested = threading.Event()
        """Set by the first signal: stop accepting, finish, release, exit."""
        self._lock = threading.Lock()

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (call from the main thread, before starting anything)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def request(self, reason: str) -> None:
        """Begin a graceful stop (as the first signal does) and arm the bound."""
        with self._lock:
            if self.requested.is_set():
                return
            self.requested.set()
        log.info("serve.stopping", reason=reason, bound_seconds=self.timeout_seconds)
        timer = threading.Timer(self.timeout_seconds, self.force, args=("the bound passed",))
        timer.daemon = True
        timer.start()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            self.force(f"a second {name}")
        else:
            self.request(name)

    def force(self, reason: str) -> None:
        """Release what can be released within ``RELEASE_SECONDS``, then exit at once."""
        log.error("serve.forced_exit", reason=reason)
        releasing = threading.Thread(target=self._release, name="sealpost-release", daemon=True)
        releasing.start()
        releasing.join(RELEASE_SECONDS)
        os._exit(FORCED_EXIT_CODE)

    def _release(self) -> None:
        try:
            self.on_force()
        except Exception as exc:  # exiting anyway: the leases expire by themselves
            log.error("serve.release_failed", error=repr(exc))
