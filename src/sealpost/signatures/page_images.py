"""Page images of the signing page, cached by bytes and drawn once per page at a time.

A page image is drawn by a PDF intake worker (seconds for a heavy page); the same page is
asked for by every signer of a process, again at each visit.  The cache is bounded by the
bytes it holds (a count would let a few tall, noisy pages hold gigabytes in the process that
also runs SMTP and sealing), and concurrent requests for one page wait for one drawing instead
of each taking an intake worker from every other tenant.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

Key = tuple[str, int]
"""(document digest, page number): a digest names its bytes forever."""


class PageImages:
    """``get(digest, page)``: ``render(digest, page)`` once, then from memory while it fits
    in ``max_bytes`` (least recently used first out).  A value that is a ``str`` (the limit
    that stopped a drawing) costs its length."""

    def __init__(self, render: Callable[[str, int], bytes | str], max_bytes: int) -> None:
        self._render = render
        self.max_bytes = max_bytes
        self._items: OrderedDict[Key, bytes | str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._drawing: dict[Key, threading.Lock] = {}

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._size

    def get(self, digest: str, page: int) -> bytes | str:
        key = (digest, page)
        with self._lock:
            if (found := self._cached(key)) is not None:
                return found
            drawing = self._drawing.setdefault(key, threading.Lock())
        with drawing:  # one drawing per page; the others wait for it
            with self._lock:
                if (found := self._cached(key)) is not None:
                    return found
            try:
                value = self._render(digest, page)
            finally:
                with self._lock:
                    self._drawing.pop(key, None)
            with self._lock:
                self._keep(key, value)
            return value

    def _cached(self, key: Key) -> bytes | str | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def _keep(self, key: Key, value: bytes | str) -> None:
        if len(value) > self.max_bytes or key in self._items:
            return
        self._items[key] = value
        self._size += len(value)
        while self._size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)
