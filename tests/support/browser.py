"""Real browsers and real HTTP servers for page tests: Debian's chromium driven by Playwright
(it cannot download its own browser here), Sealpost's app under uvicorn on 127.0.0.1, and a
plain static server for a page that embeds Sealpost (another origin)."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import require_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless chromium per test module (a fresh context per test).  Not per session:
    Playwright's sync API keeps an event loop running in the main thread while it is started,
    and every later ``asyncio.run`` there (pyHanko's synchronous API, aio-pika probes) fails."""
    if shutil.which(CHROMIUM) is None:
        require_service("chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


class LiveServer:
    """An ASGI app served by uvicorn in a thread, on a given 127.0.0.1 port."""

    def __init__(self, app: Any, port: int, sock: socket.socket | None = None) -> None:
        """``sock``: a socket already bound to ``port`` (held since the port was chosen, so
        that no other server of the test takes it in between)."""
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        sockets = [sock] if sock is not None else None
        self.thread = threading.Thread(target=lambda: self.server.run(sockets=sockets), daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class StaticSite:
    """A directory served over HTTP on 127.0.0.1 (an integrator's page)."""

    def __init__(self, directory: Path, port: int) -> None:
        handler = lambda *a, **k: _QuietHandler(*a, directory=str(directory), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> StaticSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
