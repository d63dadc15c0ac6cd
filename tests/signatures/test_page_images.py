"""The signing page's image cache (docs/security.md, resource exhaustion): bounded by the bytes
it holds, and one drawing per page however many signers ask for it at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sealpost.signatures.page_images import PageImages


def test_the_cache_holds_at_most_its_bytes_and_drops_the_least_recently_seen() -> None:
    drawn: list[tuple[str, int]] = []

    def render(digest: str, page: int) -> bytes:
        drawn.append((digest, page))
        return b"x" * 400

    images = PageImages(render, max_bytes=1000)
    for page in (1, 2):
        images.get("a", page)
    images.get("a", 1)  # seen again: page 2 is now the oldest
    images.get("a", 3)  # 1,200 bytes would not fit: page 2 goes
    assert images.size == 800
    images.get("a", 1)
    images.get("a", 2)
    assert drawn == [("a", 1), ("a", 2), ("a", 3), ("a", 2)]
    assert images.size <= 1000


def test_an_image_larger_than_the_cache_is_drawn_each_time_and_never_kept() -> None:
    images = PageImages(lambda digest, page: b"x" * 5000, max_bytes=1000)
    assert len(images.get("a", 1)) == 5000
    assert images.size == 0


def test_signers_asking_for_one_page_at_once_wait_for_one_drawing() -> None:
    drawings = 0
    started = threading.Event()

    def render(digest: str, page: int) -> bytes:
        nonlocal drawings
        drawings += 1
        started.set()
        time.sleep(0.3)  # a heavy page, drawn by an intake worker
        return b"png"

    images = PageImages(render, max_bytes=1000)
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: images.get("a", 1), range(10)))
    assert answers == [b"png"] * 10 and drawings == 1 and started.is_set()


def test_a_refused_page_is_remembered_by_its_limit() -> None:
    calls = 0

    def render(digest: str, page: int) -> str:
        nonlocal calls
        calls += 1
        return "time"

    images = PageImages(render, max_bytes=1000)
    assert images.get("a", 1) == "time" and images.get("a", 1) == "time" and calls == 1
