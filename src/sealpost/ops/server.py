"""The operations listener: ``/metrics``, ``/healthz`` and ``/readyz`` of a process.

Roles without HTTP (``smtp``, ``worker``, and any role that wants its probes apart from the
public API port) serve these on ``SEALPOST_OPS_HOST:SEALPOST_OPS_PORT`` (127.0.0.1 by
default; off unless the port is set).  A standard-library threaded HTTP server in one daemon
thread: no dependency, nothing shared with the work of the process, and a slow scrape never
delays a probe.

* ``/healthz``: liveness.  200 while the process runs and none of its background loops is
  dead (a thread that ended without being stopped: only a restart brings it back), else 503.
* ``/readyz``: :class:`sealpost.ops.readiness.Readiness`, 200 or 503 with the checks.
* ``/metrics``: :func:`sealpost.ops.collector.exposition`.

SMTP acceptor processes (``SEALPOST_SMTP_PROCESSES`` > 1) each count their own acceptances:
each one serves its own listener on the first free port above ``SEALPOST_OPS_PORT`` (up to
``SEALPOST_OPS_PORT + SEALPOST_SMTP_PROCESSES - 1``); scrape them all (docs/monitoring.md).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sealpost.app import Sealpost
from sealpost.logging import get_logger
from sealpost.ops.collector import CONTENT_TYPE, exposition
from sealpost.ops.readiness import Readiness

log = get_logger(__name__)


class OpsServer:
    """One listener, serving one process's probes and metrics."""

    def __init__(self, sp: Sealpost, role: str, host: str, port: int) -> None:
        self.sp = sp
        self.role = role
        self.readiness = Readiness(sp)
        self._http = ThreadingHTTPServer((host, port), _handler(self))
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sealpost-ops", daemon=True
        )

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def liveness(self) -> tuple[int, dict[str, object]]:
        dead = sorted(n for n, h in dict(self.sp.supervisor.health).items() if h.state == "dead")
        if dead:
            return 503, {"status": "dead loops", "loops": dead}
        return 200, {"status": "alive", "role": self.role}


def _handler(ops: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sealpost-ops"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, exposition(ops.sp, ops.role), CONTENT_TYPE)
                elif path == "/healthz":
                    self._json(*ops.liveness())
                elif path == "/readyz":
                    report = ops.readiness.check()
                    self._json(200 if report.ready else 503, report.body())
                else:
                    self._json(404, {"status": "not found"})
            except Exception as exc:  # a probe reports, it does not crash the listener
                log.error("ops.request_failed", path=path, error=repr(exc))
                self._json(500, {"status": "error", "error": type(exc).__name__})

        def _json(self, status: int, body: dict[str, object]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes and probes every few seconds: not worth a log line each."""

    return Handler


def start_ops_listener(sp: Sealpost, role: str, *, acceptor: bool = False) -> OpsServer | None:
    """Start this process's operations listener when ``SEALPOST_OPS_PORT`` is set; call it
    once the process's loops are started (readiness counts from then).  An SMTP acceptor
    process takes the first free port above it.  A port in use is an error for the main
    process (the operator must know its probes are not there)."""
    s = sp.settings
    if not s.ops_port:
        return None
    server: OpsServer | None = None
    if not acceptor:
        server = OpsServer(sp, role, s.ops_host, s.ops_port)
    else:
        for port in range(s.ops_port + 1, s.ops_port + max(s.smtp_processes, 2)):
            try:
                server = OpsServer(sp, role, s.ops_host, port)
                break
            except OSError:
                continue  # another acceptor has it
    if server is None:
        log.warning("ops.no_port_for_acceptor", first=s.ops_port + 1)
        return None
    server.readiness.started.set()
    log.info("ops.listening", host=s.ops_host, port=server.port, role=role)
    return server.start()
