"""Background loops and the one way they run: supervised, restarted with backoff, observable.

Each domain's ``tasks.py`` describes its loops as :class:`Loop` values; the composition root
starts them all through :func:`supervise`.  A loop that raises (a database restart, a broker or
TSA outage, a bug) is logged and started again after an exponential backoff (1 s doubling to
30 s), never left dead while the process keeps answering: sealing that stops silently is the
worst failure of an evidence service.  :class:`LoopHealth` is what ``/healthz`` reports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sealpost.logging import get_logger

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 30.0
SETTLE_SECONDS = 10.0
"""A restarted loop counts as recovered once it has run this long without failing again."""
FAILED_ROUNDS = 3
"""Rounds failed in a row after which a loop that survives its own errors counts as failing."""


@dataclass(frozen=True)
class Loop:
    """A named background job that runs until ``stop`` is set (and may raise)."""

    name: str
    run: Callable[[threading.Event], None]


def periodic(name: str, interval_seconds: float, step: Callable[[], object]) -> Loop:
    """A loop calling ``step`` every ``interval_seconds``; a failing round is logged and the
    next round tries again (the supervisor never has to restart it)."""

    def once() -> bool:
        step()
        return False  # never more at once: always the pause

    return while_due(name, interval_seconds, once)


def while_due(name: str, interval_seconds: float, step: Callable[[], bool]) -> Loop:
    """:func:`periodic`, except that a round returning True (more work waits) is followed
    at once by the next, without the pause."""

    def run(stop: threading.Event) -> None:
        more = False
        while not (stop.is_set() if more else stop.wait(interval_seconds)):
            try:
                more = step()
            except Exception as exc:  # the database is down: try again after the pause
                more = False
                log.error("loop.round_failed", loop=name, error=repr(exc))
                round_failed(exc)
            else:
                round_ok()

    return Loop(name, run)


def in_event_loop(
    name: str, coroutine: Callable[[threading.Event], Coroutine[Any, Any, None]]
) -> Loop:
    """A loop whose body is a coroutine, run on an event loop of its own thread."""
    return Loop(name, lambda stop: asyncio.run(coroutine(stop)))


@dataclass
class LoopHealth:
    """How one supervised loop is doing, as ``/healthz`` shows it.

    Errors are kept by their type only: ``/healthz`` answers anyone, and an exception's text
    can carry a database host, an SQL statement or a TSA URL with its token (the whole text is
    in the log)."""

    name: str
    state: str = "starting"
    """``running``, ``restarting`` (it failed; waiting for the backoff), ``stopped``, or
    ``dead`` (its thread ended without being stopped: nothing will restart it)."""
    restarts: int = 0
    last_error: str | None = None
    """The type of the last failure (a failed round or a restart), e.g. ``OperationalError``."""
    last_failure_at: float | None = None
    """``time.monotonic()`` of its last failure."""
    running_since: float | None = None
    """``time.monotonic()`` of its last (re)start."""
    failed_rounds: int = 0
    """Rounds failed in a row inside a loop that survives its own errors (reset by a good one)."""
    relapses: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    """When it failed again after having run ``SETTLE_SECONDS`` or more (recovered, then not)."""

    def failing(self, settle_seconds: float = SETTLE_SECONDS) -> bool:
        """Whether it is not doing its job: dead, waiting to restart, restarted less than
        ``settle_seconds`` ago, relapsing twice within twice the longest backoff (it flaps
        between working and failing), or failing round after round (``FAILED_ROUNDS``)."""
        if self.state in ("restarting", "dead"):
            return True
        if self.failed_rounds >= FAILED_ROUNDS:
            return True
        now = time.monotonic()
        running = self.running_since
        if running is not None and self.restarts and now - running < settle_seconds:
            return True
        return sum(1 for t in self.relapses if now - t < 2 * MAX_BACKOFF_SECONDS) >= 2


_current = threading.local()


def round_failed(exc: BaseException) -> None:
    """Called by a loop that survives its own errors when one round failed (the database is
    down, the TSA does not answer): health sees it although the loop never raises."""
    health: LoopHealth | None = getattr(_current, "health", None)
    if health is not None:
        health.failed_rounds += 1
        health.last_error = type(exc).__name__
        health.last_failure_at = time.monotonic()


def round_ok() -> None:
    """Called by such a loop after a round that worked."""
    health: LoopHealth | None = getattr(_current, "health", None)
    if health is not None and health.failed_rounds:
        health.failed_rounds = 0


def supervise(
    loop: Loop, stop: threading.Event, health: LoopHealth, *, first_backoff: float = 1.0
) -> None:
    """Run ``loop`` until ``stop``; restart it after a failure, with backoff."""
    _current.health = health
    backoff = first_backoff
    try:
        while not stop.is_set():
            health.state = "running"
            started = health.running_since = time.monotonic()
            try:
                loop.run(stop)
            except (Exception, asyncio.CancelledError) as exc:
                error, detail = type(exc).__name__, repr(exc)
            else:
                if stop.is_set():
                    break
                error = detail = "returned before being stopped"
            if time.monotonic() - started > 60:  # it ran well for a while: start afresh
                backoff = first_backoff
            health.state = "restarting"
            health.restarts += 1
            health.last_error = error
            health.last_failure_at = time.monotonic()
            if health.last_failure_at - started >= SETTLE_SECONDS:
                health.relapses.append(health.last_failure_at)
            log.error("loop.failed", loop=loop.name, error=detail, restart_in=backoff)
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    finally:
        health.state = "stopped" if stop.is_set() else "dead"
        _current.health = None


class StopEvent(threading.Event):
    """The supervisor's stop, with the moment (``time.monotonic()``) by which every loop must
    have stopped: a loop finishing its work in flight waits no longer than that."""

    def __init__(self) -> None:
        super().__init__()
        self.deadline: float | None = None

    def stop_by(self, deadline: float) -> None:
        """Stop, finishing by ``deadline`` (the earliest one given wins)."""
        if self.deadline is None or deadline < self.deadline:
            self.deadline = deadline
        self.set()


def time_left(stop: threading.Event, default: float) -> float:
    """Seconds a stopping loop may still spend on its work in flight: what is left of the
    stop's deadline (serve's one bound), else ``default``."""
    deadline = stop.deadline if isinstance(stop, StopEvent) else None
    if deadline is None:
        return default
    return max(deadline - time.monotonic(), 0.0)


class Supervisor:
    """Starts loops in threads, one way for all; stops and joins them."""

    def __init__(self, *, first_backoff: float = 1.0) -> None:
        self.first_backoff = first_backoff
        self._stop = StopEvent()
        self._threads: dict[str, threading.Thread] = {}
        self.health: dict[str, LoopHealth] = {}

    def start(self, loops: list[Loop]) -> None:
        """Start each loop not already running in this process (one thread per name)."""
        for loop in loops:
            running = self._threads.get(loop.name)
            if running is not None and running.is_alive():
                continue
            health = self.health[loop.name] = LoopHealth(loop.name)
            thread = threading.Thread(
                target=supervise,
                args=(loop, self._stop, health),
                kwargs={"first_backoff": self.first_backoff},
                name=f"sealpost-{loop.name}",
                daemon=True,
            )
            thread.start()
            self._threads[loop.name] = thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every loop and wait up to ``timeout`` s in all (they stop side by side); one
        still finishing its in-flight work stays known, so a later ``start`` does not run it
        twice."""
        deadline = time.monotonic() + timeout
        self._stop.stop_by(deadline)
        for thread in self._threads.values():
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads = {n: t for n, t in self._threads.items() if t.is_alive()}
        if not self._threads:
            self._stop = StopEvent()

    def running(self) -> set[str]:
        """The names of the loops whose thread still runs (after :meth:`stop`: still
        finishing their work in flight)."""
        return {name for name, thread in self._threads.items() if thread.is_alive()}

    @property
    def stopping(self) -> StopEvent:
        return self._stop
