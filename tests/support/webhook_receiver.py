"""A real HTTP webhook receiver on 127.0.0.1 with scripted answers, for tests.

It plays an integrator's endpoint: each POST gets the next scripted behaviour (a status code,
or ``"timeout"`` to hang past the sender's timeout) and then ``default``; every request is
kept with its exact headers and body, so tests verify signatures the way a receiver would.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    answered: int | str

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Script:
    behaviours: list[int | str] = field(default_factory=list)
    default: int = 200
    hang_seconds: float = 3.0
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> int | str:
        with self.lock:
            return self.behaviours.pop(0) if self.behaviours else self.default


class WebhookReceiver:
    """``with WebhookReceiver([500, "timeout"]) as hook: ... hook.url, hook.requests``;
    ``hook.down()`` / ``hook.up()`` take it off the network and back, on the same port."""

    def __init__(self, behaviours: Iterable[int | str] = (), **kwargs: Any) -> None:
        self.script = Script(list(behaviours), **kwargs)
        script = self.script

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                behaviour = script.next()
                request = Request(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                    behaviour,
                )
                with script.lock:
                    script.requests.append(request)
                if behaviour == "timeout":
                    time.sleep(script.hang_seconds)
                    behaviour = 200
                self.send_response(int(behaviour))
                reply = b'{"ok": true}' if int(behaviour) < 300 else b"receiver says no"
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the sender gave up (timeout)
                    self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                pass

        self._handler = Handler
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self._listen()

    def _listen(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sealpost"

    def down(self) -> None:
        """Stop listening: every POST gets "connection refused" until :meth:`up`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def up(self) -> None:
        """Listen again on the same port."""
        if self.server is None:
            self._listen()
            self.thread.start()

    @property
    def requests(self) -> list[Request]:
        with self.script.lock:
            return list(self.script.requests)

    def delivered(self) -> list[Request]:
        """Requests answered 2xx (a hung one counts: it was answered 200 after its sleep)."""
        return [r for r in self.requests if r.answered in ("timeout",) or int(r.answered) < 300]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} requests, expected {count}")
            time.sleep(0.02)
        return self.requests

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
