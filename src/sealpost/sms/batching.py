"""Group commit: many callers' writes in one transaction, each caller answered once durable.

The SMS API accepts and the operators' receipts arrive one at a time, each needing a commit
before its answer (the 201; the ``deliver_sm_resp``).  One database sync per item caps them
at a few hundred per second; queued to one writer thread, a whole batch shares a sync (the
way communications' submissions and databases' own group commit amortise it).  Under load a
batch holds many items; alone, an item waits for nothing.  If a batch fails, each item is
retried alone, so one bad item fails only its own caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine

from sealpost.db.engine import write_transaction

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256


class GroupCommit(Generic[T, R]):
    """``submit(item)`` runs ``apply(conn, items)`` over a batch in a shared transaction and
    returns the item's result once committed (or raises what the batch of it alone raised).

    ``apply`` takes the whole batch so that it can write it with one statement per table
    (``executemany``) rather than one per item."""

    def __init__(
        self, engine: Engine, apply: Callable[[Connection, list[T]], list[R]], name: str
    ) -> None:
        self.engine = engine
        self.apply = apply
        self.name = name
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, item: T, timeout: float = 60.0) -> R:
        future: Future[R] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._queue.put((item, future))
        return future.result(timeout)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[T, Future[R]]]) -> None:
        try:
            with write_transaction(self.engine) as conn:
                results = self.apply(conn, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for one in batch:  # isolate the culprit: one at a time
                self._commit([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
