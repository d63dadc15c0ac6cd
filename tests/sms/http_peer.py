"""A real HTTP SMS gateway on 127.0.0.1 for the HTTP adapter's tests (aiohttp, own thread).

Twilio-shaped at ``/2010-04-01/Accounts/<sid>/Messages.json`` (form ``To``/``From``/``Body``,
basic auth, ``{"sid": ...}`` in a 201) and JSON-shaped at ``/json/send`` (one request per
segment, ``{"id": ...}``).  What happens is scripted by the destination number's last four
digits:

- ``0429``: 429 with ``Retry-After: 7``;  ``0500``: 500;  ``0400``: 400 (Twilio's 21211
  "not a valid phone number");  ``0408``: answers only after ``hang_seconds``;
- ``0461`` (JSON): the second segment is refused with 400;
- ``0462`` (JSON): the second segment is throttled twice (``Retry-After: 0``), then taken;
- anything else: taken.

After taking a Twilio message that names a ``StatusCallback``, the peer posts ``sent`` then
``delivered`` there (a 127.0.0.1 URL only), signed as Twilio documents ``X-Twilio-Signature``
(computed here with ``hmac`` directly, not with the code under test).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

ACCOUNT_SID = "ACtest0000000000000000000000000000"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


def documented_twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """The full URL, then each POST parameter sorted by name as name + value; HMAC-SHA1 with
    the auth token; base64 (https://www.twilio.com/docs/usage/security)."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None


class GatewayPeer:
    def __init__(self, hang_seconds: float = 3.0) -> None:
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self.callbacks_sent: list[tuple[str, int]] = []
        self._counts: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

    @property
    def json_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/json/send"

    def start(self) -> GatewayPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio)
        app.router.add_post("/json/send", self._json)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _scripted(self, to: str) -> web.Response | None:
        if to.endswith("0429"):
            return web.json_response(
                {"code": 20429, "message": "Too Many Requests"}, status=429,
                headers={"Retry-After": "7"},
            )  # fmt: skip
        if to.endswith("0500"):
            return web.Response(status=500, text="internal error")
        if to.endswith("0408"):
            await asyncio.sleep(self.hang_seconds)
        if to.endswith("0400"):
            return web.json_response(
                {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                 "status": 400},
                status=400,
            )  # fmt: skip
        return None

    async def _twilio(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.received.append(Received(request.path, dict(request.headers), form=form))
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        scripted = await self._scripted(form.get("To", ""))
        if scripted is not None:
            return scripted
        sid = "SM" + uuid.uuid4().hex
        callback = form.get("StatusCallback", "")
        if callback.startswith("http://127.0.0.1:"):  # tests talk to 127.0.0.1 only
            task = asyncio.create_task(self._report(callback, sid, form))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({"sid": sid, "status": "queued"}, status=201)

    async def _report(self, url: str, sid: str, sent: dict[str, str]) -> None:
        await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as session:
            for status in ("sent", "delivered"):
                params = {
                    "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "ErrorCode": "",
                    "From": sent["From"], "MessageSid": sid, "MessageStatus": status,
                    "SmsSid": sid, "SmsStatus": status, "To": sent["To"],
                }  # fmt: skip
                signature = documented_twilio_signature(AUTH_TOKEN, url, params)
                headers = {"X-Twilio-Signature": signature}
                async with session.post(url, data=params, headers=headers) as response:
                    self.callbacks_sent.append((status, response.status))

    async def _json(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(Received(request.path, dict(request.headers), json=body))
        to = str(body.get("to", ""))
        scripted = await self._scripted(to)
        if scripted is not None:
            return scripted
        segment = str(body.get("segment", "0"))
        if to.endswith("0461") and segment == "1":
            return web.json_response({"error": "segment refused"}, status=400)
        if to.endswith("0462") and segment == "1":
            key = f"{body.get('reference')}/{segment}"
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._counts[key] <= 2:
                return web.Response(status=429, headers={"Retry-After": "0"}, text="slow down")
        return web.Response(
            status=200, content_type="application/json",
            text=json.dumps({"id": f"gw-{uuid.uuid4().hex[:12]}", "accepted": True}),
        )  # fmt: skip
