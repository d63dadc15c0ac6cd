"""What a webhook send's log lines say about its event: the communication it is about."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sealpost.events.webhooks.deliveries import ClaimedWebhookDelivery
from sealpost.events.webhooks.headers import SigningSecrets
from sealpost.events.webhooks.sender import log_context


def _delivery(payload: str) -> ClaimedWebhookDelivery:
    now = datetime.now(UTC)
    return ClaimedWebhookDelivery(
        id="d1",
        endpoint_id="e1",
        tenant_id="t1",
        url="https://crm.example/hook",
        event_id="ev1",
        event_type="communication.delivered",
        payload=payload,
        attempts=0,
        deadline_at=now,
        created_at=now,
        secrets=SigningSecrets("whsec_x", None, None),
    )


def test_an_event_about_a_communication_names_it() -> None:
    for collection in ("communications", "sms"):
        payload = json.dumps({"id": "ev1", "subject": f"{collection}/c-42"})
        assert log_context(_delivery(payload)) == {
            "tenant_id": "t1",
            "event_id": "ev1",
            "subject": f"{collection}/c-42",
            "communication_id": "c-42",
        }


def test_other_subjects_and_odd_payloads_name_no_communication() -> None:
    signatures = log_context(_delivery(json.dumps({"subject": "signatures/p-1"})))
    assert signatures == {"tenant_id": "t1", "event_id": "ev1", "subject": "signatures/p-1"}
    for odd in ("not json", "[1, 2]", json.dumps({"subject": 7}), json.dumps({})):
        assert log_context(_delivery(odd)) == {"tenant_id": "t1", "event_id": "ev1"}


SCRIPT = """
import logging, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import httpx
from sealpost.logging import configure_logging, get_logger

class Gateway(BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
threading.Thread(target=server.serve_forever, daemon=True).start()
configure_logging("DEBUG", "json")
port = server.server_address[1]
httpx.post(f"http://gw:GW-PASSWORD@127.0.0.1:{port}/send?text=Su%20codigo%20483920&api_key=GW-KEY")
logging.getLogger("mail.log").debug("%r << %r", "peer", b"dXNlcjpzM2NyZXQ=")  # AUTH LOGIN
logging.getLogger("mail.log").info("%r >> %r", "peer", b"RCPT TO:<ana@example.com>")
logging.getLogger("asyncio").warning("Executing <Task> took 0.5 seconds")
get_logger("sealpost.test").debug("own.debug", communication_id="c-1")
server.shutdown()
"""


def test_json_logs_keep_libraries_at_warning_no_urls_commands_or_credentials() -> None:
    """With SEALPOST_LOG_FORMAT=json every library line goes to the JSON stream: only at
    WARNING and above, even under SEALPOST_LOG_LEVEL=DEBUG, so that httpx's request lines (an
    SMS gateway URL with the text and its one-time code, an api_key, user:password) and
    aiosmtpd's command log (addresses, AUTH LOGIN credentials) never reach it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    text = done.stderr
    for secret in ("483920", "GW-KEY", "GW-PASSWORD", "dXNlcjpzM2NyZXQ=", "ana@example.com"):
        assert secret not in text, text
    events = [line["event"] for line in lines]
    assert "Executing <Task> took 0.5 seconds" in events  # a library's warning still shows
    assert "own.debug" in events  # Sealpost's own lines follow SEALPOST_LOG_LEVEL
