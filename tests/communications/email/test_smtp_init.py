"""The acceptor's own ``SMTP.__init__`` (introspection computed once, not per connection)
leaves every session exactly as aiosmtpd's ``__init__`` does, commands guarded alike."""

from __future__ import annotations

import asyncio
import ssl
from types import MethodType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from sealpost.communications.email import smtp_server
from sealpost.communications.email.inbound import InboundSMTP
from sealpost.communications.email.smtp_server import SealpostSMTP, _guarded


class _Handler:
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return responses

    async def handle_DATA(self, *args: Any) -> str:
        return "250 OK"

    async def auth_CUSTOM(self, *args: Any) -> None:
        return None


def _state(server: SMTP) -> dict[str, Any]:
    state = dict(vars(server))
    for key in ("_stream_reader", "_stream_reader_wr", "_strong_reader"):
        state.pop(key, None)  # a fresh StreamReader each: compared by type below
    return state


def _context() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (
            SealpostSMTP,
            {
                "hostname": "mx.example",
                "ident": "Sealpost ESMTP certified mail",
                "data_size_limit": 1000,
                "enable_SMTPUTF8": True,
                "decode_data": False,
                "require_starttls": False,
                "tls_context": "ctx",
                "auth_required": False,
                "auth_require_tls": True,
                "authenticator": lambda *a: None,
                "timeout": 300,
            },
        ),
        (
            InboundSMTP,
            {
                "hostname": "mx.example",
                "ident": "Sealpost ESMTP",
                "tls_context": None,
                "require_starttls": False,
                "data_size_limit": 2000,
                "message_limit": 1000,
                "enable_SMTPUTF8": True,
                "decode_data": False,
                "auth_required": False,
                "auth_require_tls": True,
                "timeout": 60,
            },
        ),
    ],
)
def test_fast_init_matches_aiosmtpd(
    cls: type[SealpostSMTP], kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        if kwargs.get("tls_context") == "ctx":
            kwargs = {**kwargs, "tls_context": _context()}
        handler = _Handler()
        fast = cls(handler, **kwargs)
        monkeypatch.setattr(smtp_server, "_fast_init", lambda *a: False)
        slow = cls(handler, **kwargs)
        fast_state, slow_state = _state(fast), _state(slow)
        assert fast_state.keys() == slow_state.keys()
        for key, value in slow_state.items():
            if key == "_smtp_methods":
                continue
            if key == "_auth_methods":  # bound methods: equal when same function and object
                assert {
                    m: (a.method.__func__ if a.is_builtin else a.method, a.is_builtin)
                    for m, a in value.items()
                } == {
                    m: (a.method.__func__ if a.is_builtin else a.method, a.is_builtin)
                    for m, a in fast_state[key].items()
                }, key
                continue
            if key == "_handle_hooks":
                assert value == fast_state[key]
                continue
            if isinstance(value, str | int | float | bool | ssl.SSLContext | None):
                assert fast_state[key] == value, key
            elif callable(value) and not isinstance(value, MethodType):
                assert fast_state[key] is value, key
            else:  # the loop, the reader's callbacks: objects of this session
                assert type(fast_state[key]) is type(value), key
        assert "CUSTOM" in fast_state["_auth_methods"] and "PLAIN" in fast_state["_auth_methods"]
        fast_methods, slow_methods = fast_state["_smtp_methods"], slow_state["_smtp_methods"]
        assert fast_methods.keys() == slow_methods.keys()
        for name, method in fast_methods.items():
            assert isinstance(method, MethodType) and method.__self__ is fast
            other = slow_methods[name]
            assert method.__func__ is other.__func__  # the same (cached) guarded function
            if name == "QUIT":
                assert method.__func__ is cls.smtp_QUIT
            else:
                assert method.__func__ is _guarded(
                    getattr(cls, f"smtp_{name}"), name in ("MAIL", "RCPT", "DATA")
                )
                # HELP reads the syntax text through the wrapper
                assert getattr(method, "__smtp_syntax__", None) == getattr(
                    getattr(cls, f"smtp_{name}"), "__smtp_syntax__", None
                )
    finally:
        asyncio.set_event_loop(None)
        loop.close()
