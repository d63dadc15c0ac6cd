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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sealpost.logging import get_logger

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 30.0
SETTLE_SECONDS = 10.0
"""A restarted loop counts as recovered once it has run this long without failing again."""


@dataclass(frozen=True)
class Loop:
    """A named background job that runs until ``stop`` is set (and may raise)."""

    name: str
    run: Callable[[threading.Event], None]


def periodic(name: str, interval_seconds: float, step: Callable[[], object]) -> Loop:
    """A loop calling ``step`` every ``interval_seconds``; a failing round is logged and the
    next round tries again (the supervisor never has to restart it)."""

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval_seconds):
            try:
                step()
            except Exception as exc:  # the database is down: try again next round
                log.error("loop.round_failed", loop=name, error=repr(exc))

    return Loop(name, run)


def in_event_loop(
    name: str, coroutine: Callable[[threading.Event], Coroutine[Any, Any, None]]
) -> Loop:
    """A loop whose body is a coroutine, run on an event loop of its own thread."""
    return Loop(name, lambda stop: asyncio.run(coroutine(stop)))


@dataclass
class LoopHealth:
    """How one supervised loop is doing, as ``/healthz`` shows it."""

    name: str
    state: str = "starting"
    """``running``, ``restarting`` (it failed; waiting for the backoff) or ``stopped``."""
    restarts: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None
    """``time.monotonic()`` of its last failure."""
    running_since: float | None = None
    """``time.monotonic()`` of its last (re)start."""

    def failing(self, settle_seconds: float = SETTLE_SECONDS) -> bool:
        """Whether it waits to restart, or was restarted less than ``settle_seconds`` ago
        (a loop that fails at every try flaps between the two: it stays failing)."""
        if self.state == "restarting":
            return True
        if self.last_failure_at is None or self.running_since is None:
            return False
        return time.monotonic() - self.running_since < settle_seconds


def supervise(
    loop: Loop, stop: threading.Event, health: LoopHealth, *, first_backoff: float = 1.0
) -> None:
    """Run ``loop`` until ``stop``; restart it after a failure, with backoff."""
    backoff = first_backoff
    while not stop.is_set():
        health.state = "running"
        started = health.running_since = time.monotonic()
        try:
            loop.run(stop)
        except Exception as exc:
            error = repr(exc)
        else:
            if stop.is_set():
                break
            error = "returned before being stopped"
        if time.monotonic() - started > 60:  # it ran well for a while: start backoff afresh
            backoff = first_backoff
        health.state = "restarting"
        health.restarts += 1
        health.last_error = error
        health.last_failure_at = time.monotonic()
        log.error("loop.failed", loop=loop.name, error=error, restart_in=backoff)
        if stop.wait(backoff):
            break
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
    health.state = "stopped"


class Supervisor:
    """Starts loops in threads, one way for all; stops and joins them."""

    def __init__(self, *, first_backoff: float = 1.0) -> None:
        self.first_backoff = first_backoff
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.health: dict[str, LoopHealth] = {}

    def start(self, loops: list[Loop]) -> None:
        for loop in loops:
            if loop.name in self.health and self.health[loop.name].state != "stopped":
                continue  # already running in this process
            health = self.health[loop.name] = LoopHealth(loop.name)
            thread = threading.Thread(
                target=supervise,
                args=(loop, self._stop, health),
                kwargs={"first_backoff": self.first_backoff},
                name=f"sealpost-{loop.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._stop = threading.Event()

    @property
    def stopping(self) -> threading.Event:
        return self._stop
