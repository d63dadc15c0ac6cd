"""An RFC 3161 TSA over real HTTP on 127.0.0.1 that a test can take down and bring back.

Sealpost is pointed at it as at any external TSA (``SEALPOST_TSA_URL``), so an outage is a
refused connection on the socket, seen by every part that timestamps (the signature
service, the sequencer) exactly as in production: no part of the application is swapped.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from sealpost.pki.tsa import EmbeddedTSA
from tests.support.smtp_peer import free_port


class SwitchableTsa:
    """``url`` answers RFC 3161 queries (RFC 3161 §3.4) while up; refuses connections while
    down.  The port stays the same across :meth:`down` and :meth:`up`."""

    def __init__(self, tsa: EmbeddedTSA) -> None:
        self.tsa = tsa
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/tsa"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        if self._server is not None:
            return
        tsa = self.tsa

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = tsa.respond(query)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: the next query gets "connection refused"."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> SwitchableTsa:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()
