"""The SMTP submission server (RFC 6409 on 587 with STARTTLS, RFC 8314 implicit TLS on 465).

aiosmtpd speaks the protocol; this module decides who may send and what a reply means:

* AUTH PLAIN/LOGIN only inside TLS (aiosmtpd answers 538 otherwise), per-tenant credentials,
  and an IP that fails too often is locked out for a while (454, RFC 4954 §6);
* an IP with too many connections, or too many commands before it authenticates, gets 421
  and is disconnected (``client_limits.py``);
* a company's relay may instead be trusted by IP network (``sealpost tenant smtp-network``);
* ``250`` is sent only once :class:`SubmissionService` has the bytes fsync'ed and the
  SubmissionAcceptance records committed (a ``451`` otherwise, ``452 4.3.1`` when the storage
  is full: the client keeps the message);
* refusals with an identified sender (size, policy, content) are permanent (5xx with an
  RFC 3463 enhanced code) and leave SubmissionRejection evidence; only a fault of Sealpost's
  own (the database is down, the disk is full) answers ``4xx``.

The hooks run on the server's event loop, so every blocking step (parsing, the database, the
disk) runs in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from types import MethodType
from typing import Any

import aiosmtpd
from aiosmtpd import _get_or_new_eventloop
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    _AuthMechAttr,
    syntax,
)

from sealpost.communications.email.addresses import AddressError, checked_address
from sealpost.communications.email.client_limits import SmtpClientLimits
from sealpost.communications.email.refusals import SubmissionRefused
from sealpost.communications.email.submission import (
    Accepted,
    SubmissionRequest,
    SubmissionService,
)
from sealpost.config import Settings
from sealpost.db.full import StorageFull
from sealpost.logging import get_logger
from sealpost.ratelimit import client_key
from sealpost.tenants.repository import Tenant
from sealpost.tenants.senders import SenderRepository

log = get_logger(__name__)

_TRANSACTION = frozenset({"MAIL", "RCPT", "DATA"})
"""The commands of a mail transaction (RFC 5321 §3.3): draining waits for their reply."""

AUTH_REQUIRED = "530 5.7.0 Authentication required"
TOO_MANY_FAILURES = "454 4.7.0 Too many failed authentications from your address; try later"
STORE_FAILED = "451 4.3.0 The message could not be stored; please try again later"
TEMPORARY_FAILURE = "451 4.3.0 Temporary server failure; please try again later"
STORAGE_FULL = "452 4.3.1 Insufficient system storage; please try again later"
"""RFC 5321 §4.2.3 (452) with RFC 3463's X.3.1 "mail system full": the client keeps the
message and retries; nothing of it was kept here."""


@dataclass(frozen=True)
class SmtpIdentity:
    """Who a session speaks for, kept in ``session.auth_data``."""

    tenant: Tenant
    identification: dict[str, Any]


def client_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


def tls_details(server: SMTP) -> dict[str, Any] | None:
    """TLS version and cipher of the session, for the evidence (None: plaintext)."""
    ssl_object = None
    if server.session is not None and server.session.ssl:
        ssl_object = server.session.ssl.get("ssl_object")
    if ssl_object is None and server.transport is not None:
        ssl_object = server.transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {"version": ssl_object.version(), "cipher": cipher[0] if cipher else None}


class AuthLimiter:
    """Counts failed AUTH per client (an IPv4 address or an IPv6 /64, as the rate limits
    count them); too many within the window locks the client out.  Only clients with recent
    failures are remembered, at most :data:`MAX_CLIENTS` of them (the oldest go first)."""

    MAX_CLIENTS = 100_000

    def __init__(self, max_failures: int, lockout_seconds: float) -> None:
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(key, []) if now - t < self.lockout_seconds]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def locked(self, ip: str) -> bool:
        with self._lock:
            return len(self._recent(client_key(ip), time.monotonic())) >= self.max_failures

    def failed(self, ip: str) -> None:
        key, now = client_key(ip), time.monotonic()
        with self._lock:
            recent = self._recent(key, now)
            self._failures.pop(key, None)  # re-inserted last: the dict stays oldest first
            self._failures[key] = [*recent, now]
            while len(self._failures) > self.MAX_CLIENTS:
                del self._failures[next(iter(self._failures))]


@dataclass(frozen=True)
class _DeferredAuth:
    mechanism: str
    data: Any


class _Session(Session):
    """aiosmtpd's session without its deprecation warning on ``login_data``: aiosmtpd 1.4.6
    itself sets that deprecated attribute after every successful AUTH, which logs
    "Session.login_data is deprecated" once per login (aio-libs/aiosmtpd#347).  Sealpost
    reads ``auth_data`` (the current API) only."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


Command = Callable[[Any, str | None], Awaitable[None]]


@functools.cache
def _guarded(func: Command, transaction: bool) -> Command:
    """``func`` (an unbound ``smtp_<COMMAND>`` other than QUIT) behind the listener's drain
    and the per-IP command rate.  Draining refuses it with a 421 unless a transaction is under
    way (``transaction``: the command is part of one, MAIL/RCPT/DATA, so draining waits for
    its reply); a session not yet authenticated over its IP's command rate gets a 421 and is
    closed.  Built once per command and class, bound per connection (a wrapper per command
    and connection cost a few percent of the CPU under load)."""

    @functools.wraps(func)
    async def guarded(self: SealpostSMTP, arg: str | None) -> None:
        if self.draining and not self.in_transaction():
            self._goodbye()
            return
        self._in_command = transaction
        try:
            if not await self._rate_refused():
                await func(self, arg)
        finally:
            self._in_command = False
        if self.draining and not self.in_transaction():
            self._goodbye()

    return guarded


@dataclass(frozen=True)
class _Tables:
    """What aiosmtpd's ``SMTP.__init__`` looks up by introspection on every connection
    (``inspect.getmembers`` of the server and the handler, ``dir``, ``inspect.signature``),
    computed once per server class and handler."""

    auth: tuple[tuple[str, str, bool, Any], ...]
    """(mechanism, attribute, built in, the handler's bound method or None), in aiosmtpd's
    order (a later one of the same mechanism wins)."""
    hooks: dict[str, Callable[..., Any]]
    ehlo_hook_ver: str | None
    commands: tuple[tuple[str, Command | None], ...]
    """(command, guarded function; None: QUIT, bound unguarded)."""


_AIOSMTPD_VERSION = "1.4.6"
"""The aiosmtpd whose ``SMTP.__init__`` :func:`_fast_init` reproduces (pinned in pyproject;
another version takes aiosmtpd's own ``__init__``)."""
_FAST_KWARGS = frozenset(
    {
        "data_size_limit",
        "enable_SMTPUTF8",
        "decode_data",
        "hostname",
        "ident",
        "tls_context",
        "require_starttls",
        "timeout",
        "auth_required",
        "auth_require_tls",
        "authenticator",
        "auth_callback",
    }
)
_tables: weakref.WeakKeyDictionary[Any, dict[type, _Tables]] = weakref.WeakKeyDictionary()


def _tables_for(server: SealpostSMTP, handler: Any) -> _Tables:
    by_class = _tables.setdefault(handler, {})
    found = by_class.get(type(server))
    if found is not None:
        return found
    auth = []
    for obj in (server, handler):
        for name, method in inspect.getmembers(obj):
            if name.startswith("auth_"):
                default = name.replace("auth_", "").replace("__", "-")
                mechanism = getattr(method, "__auth_mechanism_name__", default)
                builtin = obj is server
                auth.append((mechanism, name, builtin, None if builtin else method))
    hooks = {
        m.replace("handle_", ""): getattr(handler, m)
        for m in dir(handler)
        if m.startswith("handle_")
    }
    ehlo = hooks.get("EHLO")
    ehlo_hook_ver = None
    if ehlo is not None:
        count = len(inspect.signature(ehlo).parameters)
        ehlo_hook_ver = {4: "old", 5: "new"}.get(count)
        if ehlo_hook_ver is None:
            raise RuntimeError("Unsupported EHLO Hook")
    commands: list[tuple[str, Command | None]] = []
    for name in dir(type(server)):
        if name.startswith("smtp_"):
            command = name.replace("smtp_", "")
            func = getattr(type(server), name)
            commands.append(
                (command, None if command == "QUIT" else _guarded(func, command in _TRANSACTION))
            )
    found = _Tables(tuple(auth), hooks, ehlo_hook_ver, tuple(commands))
    by_class[type(server)] = found
    return found


def _fast_init(server: SealpostSMTP, handler: Any, kwargs: dict[str, Any]) -> bool:
    """aiosmtpd 1.4.6's ``SMTP.__init__`` for the settings Sealpost uses, with its
    per-connection introspection (about a sixth of the acceptor's CPU under load: one
    connection per message) read from :class:`_Tables`.  False, having done nothing, for
    anything it does not reproduce exactly (another aiosmtpd, a setting aiosmtpd warns about
    or that needs more); then aiosmtpd's own ``__init__`` runs.  ``tests/communications/
    email/test_smtp_init.py`` compares the two."""
    if aiosmtpd.__version__ != _AIOSMTPD_VERSION or not kwargs.keys() <= _FAST_KWARGS:
        return False
    tls_context: ssl.SSLContext | None = kwargs.get("tls_context")
    if tls_context is not None and (
        tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}
        or tls_context.check_hostname
    ):
        return False  # aiosmtpd logs a warning about it: let it
    auth_required = kwargs.get("auth_required", False)
    auth_require_tls = kwargs.get("auth_require_tls", True)
    if auth_required and not auth_require_tls:
        return False  # idem (a warning)
    try:
        tables = _tables_for(server, handler)
    except TypeError:  # a handler that cannot be weakly referenced
        return False
    s: Any = server
    s.__ident__ = kwargs.get("ident") or aiosmtpd.smtp.__ident__
    s.loop = _get_or_new_eventloop()
    asyncio.StreamReaderProtocol.__init__(
        server,
        asyncio.StreamReader(loop=s.loop, limit=server.line_length_limit),
        client_connected_cb=s._cb_client_connected,
        loop=s.loop,
    )
    s.event_handler = handler
    data_size_limit = kwargs.get("data_size_limit", aiosmtpd.smtp.DATA_SIZE_DEFAULT)
    assert data_size_limit is None or isinstance(data_size_limit, int)
    s.data_size_limit = data_size_limit
    s.enable_SMTPUTF8 = kwargs.get("enable_SMTPUTF8", False)
    s._decode_data = kwargs.get("decode_data", False)
    s.command_size_limits.clear()
    s.hostname = kwargs.get("hostname") or socket.getfqdn()
    s.tls_context = tls_context
    s.require_starttls = tls_context and kwargs.get("require_starttls", False)
    s._timeout_duration = kwargs.get("timeout", 300)
    s._timeout_handle = None
    s._tls_handshake_okay = True
    s._tls_protocol = None
    s._original_transport = None
    s.session = None
    s.envelope = None
    s.transport = None
    s._handler_coroutine = None
    s._auth_require_tls = auth_require_tls
    s._proxy_timeout = None
    authenticator = kwargs.get("authenticator")
    if authenticator is not None:
        s._authenticator = authenticator
        s._auth_callback = None
    else:
        s._auth_callback = kwargs.get("auth_callback") or aiosmtpd.smtp.login_always_fail
        s._authenticator = None
    s._auth_required = auth_required
    s._auth_methods = {
        mechanism: _AuthMechAttr(
            getattr(server, name) if builtin else method,
            builtin,
        )
        for mechanism, name, builtin, method in tables.auth
    }
    s._handle_hooks = dict(tables.hooks)
    s._ehlo_hook_ver = tables.ehlo_hook_ver
    s._smtp_methods = {
        command: getattr(server, f"smtp_{command}") if func is None else MethodType(func, server)
        for command, func in tables.commands
    }
    s._enforce_call_limit = False
    return True


class SealpostSMTP(SMTP):
    """aiosmtpd's server with clearer size refusals that also leave evidence.

    Credentials are checked in a thread: aiosmtpd calls the authenticator synchronously on the
    event loop, and a password hash (scrypt, tens of ms) there would stall every session, an
    easy denial of service with wrong passwords from many addresses.  ``_getaddr`` is aiosmtpd
    1.4.6's own, minus the ``typing.Protocol`` class it defines on every call (a metaclass
    construction per MAIL and RCPT: a few percent of the CPU under load), and refusing control
    characters (a NUL in MAIL FROM would otherwise reach the database).
    """

    def __init__(
        self, handler: Any, *, client_limits: SmtpClientLimits | None = None, **kwargs: Any
    ) -> None:
        if not _fast_init(self, handler, kwargs):
            super().__init__(handler, **kwargs)
            self._smtp_methods = {
                name: method
                if name == "QUIT"
                else MethodType(_guarded(method.__func__, name in _TRANSACTION), self)
                for name, method in self._smtp_methods.items()
            }
        self.client_limits = client_limits
        self._counted_ip: str | None = None
        """The client IP this connection is counted for (None: exempt, or not admitted)."""
        self.draining = False
        """Set by :meth:`SmtpListeners.stop_accepting`: the transaction under way finishes;
        then (or at once when none is) the client gets a 421 and the connection closes."""
        self._in_command = False

    def in_transaction(self) -> bool:
        """Between MAIL and the reply to DATA (or RSET): a message is on its way in.  Any
        other command under way (an ``AUTH LOGIN`` waiting for its client, STARTTLS, EHLO)
        is no transaction: draining does not wait for it."""
        return self._in_command or (
            self.envelope is not None and self.envelope.mail_from is not None
        )

    def drain(self) -> None:
        """Shutting down: a session between two transactions is told so now (RFC 5321
        §3.8: 421, then close; its client sends again elsewhere or later); one inside a
        transaction after its reply."""
        self.draining = True
        if not self.in_transaction():
            self._goodbye()

    def _goodbye(self) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(b"421 4.3.2 Service shutting down, try again later\r\n")
            transport.close()

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def _handle_client(self) -> None:
        """The per-IP connection limits, before the greeting: 421 instead of 220 (RFC 5321
        §3.8), then the connection is closed."""
        limits = self.client_limits
        if limits is not None and self.session is not None and self.transport is not None:
            ip = client_ip(self.session)
            try:
                exempt = limits.exempt_cached(ip)
                if exempt is None:  # not known without the database
                    exempt = await asyncio.to_thread(limits.exempt, ip)
            except Exception as exc:  # the database is away: count the client, greet it anyway
                log.warning("smtp.exempt_check_failed", client_ip=ip, error=repr(exc))
                exempt = False
            if not exempt:
                refusal = limits.open(ip)
                if refusal is not None:
                    log.warning("smtp.client_limited", client_ip=ip, reply=refusal)
                    await self.push(refusal)
                    self.transport.close()
                    return
                self._counted_ip = ip
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        ip, self._counted_ip = self._counted_ip, None
        if ip is not None and self.client_limits is not None:
            self.client_limits.close(ip)
        super().connection_lost(error)

    async def _rate_refused(self) -> bool:
        """Count a command of a session not yet authenticated against its IP's rate: over
        it, 421 and the connection is closed (True: the command is not run)."""
        ip = self._counted_ip
        if (
            ip is None
            or self.client_limits is None
            or (self.session is not None and self.session.authenticated)
        ):
            return False
        refusal = self.client_limits.command(ip)
        if refusal is None:
            return False
        log.warning("smtp.client_limited", client_ip=ip, reply=refusal)
        await self.push(refusal)
        if self.transport is not None:
            self.transport.close()
        return True

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        if self._authenticator is None:
            return super()._authenticate(mechanism, auth_data)
        return AuthResult(
            success=False, handled=False, auth_data=_DeferredAuth(mechanism, auth_data)
        )

    async def _finish_auth(self, result: AuthResult) -> AuthResult:
        deferred = result.auth_data
        if not isinstance(deferred, _DeferredAuth) or self._authenticator is None:
            return result
        assert self.session is not None and self.envelope is not None
        outcome: AuthResult = await asyncio.to_thread(
            self._authenticator,
            self,
            self.session,
            self.envelope,
            deferred.mechanism,
            deferred.data,
        )
        return outcome

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_LOGIN(_, args))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if not arg:
            return "", ""
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        addr = str(address.addr_spec)
        if any(ord(c) < 32 or ord(c) == 127 for c in addr):
            return None, None  # a NUL or control character is no address (RFC 5321 §4.1.2)
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, str(rest)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd 1.4.6's DATA, the message gathered in one buffer.

        aiosmtpd keeps every line as a ``bytearray`` of its own (about 150 bytes for a line of
        78) and joins them at the end: a 36 MB message cost three times its size before it was
        even parsed.  Here each line, dot-unstuffed (RFC 5321 §4.5.2), is written to one
        ``BytesIO``, whose ``getvalue`` hands its buffer over without a copy.  Everything else
        is aiosmtpd's: the size and line-length limits, answered after the data (§4.2.5).
        """
        if self._decode_data:  # not Sealpost's configuration: aiosmtpd's own
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buffer = io.BytesIO()
        size = 0
        limit = self.data_size_limit
        fragments: list[bytes] = []
        state = "nominal"
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:  # the connection was reset during DATA
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:  # a line over the stream limit
                state = "too long" if state == "nominal" else state
                buffer = io.BytesIO()  # nothing more is kept
                line = await self._reader.read(exc.consumed)
            if not fragments and line == b".\r\n":
                break
            size += len(line)
            if state == "nominal" and limit and size > limit:
                state = "too much"
                buffer = io.BytesIO()
            if state == "nominal":
                fragments.append(line)
            elif not fragments:
                fragments.append(b"")  # only "within a line": a refused line is not kept
            if line.endswith(b"\r\n"):
                if state == "nominal":
                    whole = line if len(fragments) == 1 else b"".join(fragments)
                    if len(whole) > self.line_length_limit:
                        state = "too long"
                        buffer = io.BytesIO()
                    else:
                        buffer.write(memoryview(whole)[1:] if whole[:1] == b"." else whole)
                fragments.clear()
        if state != "nominal":
            if state == "too long":
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            else:
                await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = buffer.getvalue()
        del buffer
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def handle_exception(self, error: Exception) -> str:
        """A fault of ours (the database is down, say) is temporary for the client: 451, one
        line, no internals; the client keeps the message and retries (RFC 5321 §4.2.5)."""
        log.error("smtp.session_error", error=repr(error))
        return TEMPORARY_FAILURE

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("552 Error: message size exceeds"):
            status = f"552 5.3.4 Message too big: the limit is {self.data_size_limit} bytes"
            notify = getattr(self.event_handler, "oversize", None)
            if notify is not None and self.session is not None and self.envelope is not None:
                await notify(self.session, self.envelope)
        if isinstance(status, str) and status.startswith("552 Error: Too much mail data"):
            status = f"552 5.3.4 Message too big: the limit is {self.data_size_limit} bytes"
            notify = getattr(self.event_handler, "oversize", None)
            if notify is not None and self.session is not None and self.envelope is not None:
                await notify(self.session, self.envelope)
        await super().push(status)


class SubmissionHandler:
    """aiosmtpd handler of the submission ports."""

    def __init__(
        self, service: SubmissionService, senders: SenderRepository, settings: Settings
    ) -> None:
        self.service = service
        self.senders = senders
        self.settings = settings
        self.limiter = AuthLimiter(
            settings.smtp_auth_max_failures, settings.smtp_auth_lockout_seconds
        )

    # -- AUTH -------------------------------------------------------------------------------

    def authenticator(
        self, server: SMTP, session: Session, _envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ip = client_ip(session)
        if self.limiter.locked(ip):
            log.warning("smtp.auth_locked_out", client_ip=ip)
            return AuthResult(success=False, handled=False, message=TOO_MANY_FAILURES)
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        tenant = self.senders.authenticate_smtp(username, password)
        if tenant is None:
            self.limiter.failed(ip)
            log.info("smtp.auth_failed", client_ip=ip, username=username)
            return AuthResult(success=False, handled=False)
        tls = tls_details(server)
        identity = SmtpIdentity(
            tenant,
            {
                "method": "smtp-auth",
                "mechanism": mechanism,
                "username": username,
                **({"tls": tls} if tls else {}),
            },
        )
        return AuthResult(success=True, auth_data=identity)

    # -- envelope ---------------------------------------------------------------------------

    async def handle_EHLO(
        self,
        _server: SMTP,
        session: Session,
        _envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    def _identity(self, session: Session) -> SmtpIdentity | None:
        if session.authenticated and isinstance(session.auth_data, SmtpIdentity):
            return session.auth_data
        ip = client_ip(session)
        tenant = self.senders.tenant_for_client(ip)
        if tenant is None:
            return None
        return SmtpIdentity(tenant, {"method": "relay-network", "client_ip": ip})

    async def identity(self, session: Session) -> SmtpIdentity | None:
        """:meth:`_identity` on the loop when the relay networks are cached (the common
        case: no thread hop per message), else in a thread (it reads the database)."""
        if session.authenticated and isinstance(session.auth_data, SmtpIdentity):
            return session.auth_data
        ip = client_ip(session)
        cached, tenant = self.senders.cached_tenant_for_client(ip)
        if not cached:
            return await asyncio.to_thread(self._identity, session)
        if tenant is None:
            return None
        return SmtpIdentity(tenant, {"method": "relay-network", "client_ip": ip})

    async def handle_MAIL(
        self, _server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.limiter.locked(client_ip(session)) and not session.authenticated:
            return TOO_MANY_FAILURES
        identity = await self.identity(session)
        if identity is None:
            return AUTH_REQUIRED
        session.sealpost_identity = identity  # type: ignore[attr-defined]  # for DATA
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self.settings.smtp_max_recipients})"
        try:
            address = checked_address(address)
        except AddressError:
            return "553 5.1.3 A recipient needs a bare local@domain address"
        if address.lower() in (a.lower() for a in envelope.rcpt_tos):
            return "250 2.1.5 Recipient OK (already given)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    # -- DATA -------------------------------------------------------------------------------

    def _session_details(self, server: SMTP, session: Session) -> dict[str, Any]:
        tls = tls_details(server)
        return {
            "smtp": {
                "client_ip": client_ip(session),
                "helo": session.host_name,
                "server": self.settings.hostname,
                **({"tls": tls} if tls else {}),
            }
        }

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        identity: SmtpIdentity | None = getattr(session, "sealpost_identity", None)
        if identity is None:
            return AUTH_REQUIRED
        raw = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        details = self._session_details(server, session)
        request = SubmissionRequest(
            tenant_id=identity.tenant.id,
            via="smtp",
            mail_from=mail_from,
            recipients=tuple(envelope.rcpt_tos),
            raw=raw,
            identification=identity.identification,
            details=details,
        )

        def submit() -> Future[Accepted]:  # in a thread: the domain lookup may hit the database
            domains = self.senders.sender_domains(identity.tenant.id)
            return self.service.submit(replace(request, sender_domains=domains))

        try:
            future = await asyncio.to_thread(submit)
            accepted = await asyncio.wrap_future(future)
        except SubmissionRefused as exc:  # permanent; its evidence is committed
            return exc.smtp_reply()
        except StorageFull:
            return STORAGE_FULL
        except Exception as exc:
            log.error("smtp.store_failed", error=repr(exc))
            return STORE_FAILED
        return accepted_reply(accepted)

    async def oversize(self, session: Session, envelope: Envelope) -> None:
        """Evidence of a size refusal (at DATA, or at MAIL when SIZE= announced it)."""
        try:
            identity = await asyncio.to_thread(self._identity, session)
        except Exception as exc:  # the refusal stands; only its evidence is lost
            log.error("smtp.oversize_evidence_failed", error=repr(exc))
            return
        if identity is None:
            return
        limit = self.settings.smtp_max_message_bytes
        await asyncio.to_thread(
            self.service.reject,
            tenant_id=identity.tenant.id,
            mail_from=envelope.mail_from or "",
            recipients=list(envelope.rcpt_tos),
            identification=identity.identification,
            code="message-too-big",
            text=f"552 5.3.4 Message too big: the limit is {limit} bytes",
            details={"smtp": {"client_ip": client_ip(session), "helo": session.host_name}},
        )


def accepted_reply(accepted: Accepted) -> str:
    """250 naming each communication (multi-line when several, RFC 5321 §4.2.1)."""
    if len(accepted.communication_ids) == 1:
        return f"250 2.0.0 Ok: queued as {accepted.communication_ids[0]}"
    lines = [
        f"250-2.0.0 {cid} <{rcpt}>"
        for cid, rcpt in zip(accepted.communication_ids, accepted.recipients, strict=True)
    ]
    return "\r\n".join([*lines, f"250 2.0.0 Ok: submission {accepted.submission_id}"])


def server_tls_context(certificate: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is importable, else asyncio's own.

    The listeners' loop thread is the acceptor's busiest (accept, reads, replies for every
    session); uvloop does that work in C (libuv).  Without it (another platform, an install
    without the wheel) the same code runs on asyncio's loop: only slower.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it installs
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SmtpListeners:
    """Runs the SMTP listeners on one event loop in a thread of the ``serve`` process."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        # parsing and submitting run in threads: more than asyncio's default (cores + 4)
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="sealpost-smtp-io")
        )
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: weakref.WeakSet[SealpostSMTP] = weakref.WeakSet()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="sealpost-smtp", daemon=True
        )
        self._thread.start()

    def listen(
        self,
        factory: Callable[[], SMTP],
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> int:
        """Bind and serve; returns the port (useful with port 0).

        ``reuse_port`` lets several acceptor processes share the port (SO_REUSEPORT): the
        kernel spreads connections among them.
        """

        def tracked() -> SMTP:
            session = factory()
            if isinstance(session, SealpostSMTP):
                self._sessions.add(session)
            return session

        async def start() -> asyncio.base_events.Server:
            return await self.loop.create_server(
                tracked, host, port, ssl=tls, reuse_port=reuse_port or None
            )

        server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def serving(self) -> bool:
        """Whether every listener still accepts connections (its event loop runs): ``/readyz``."""
        return (
            self._thread.is_alive()
            and bool(self._servers)
            and all(s.is_serving() for s in self._servers)
        )

    def stop_accepting(self) -> None:
        """Graceful shutdown, first step: close the listening sockets (a new client is
        refused and tries again later or another process), tell idle sessions 421, let each
        transaction under way finish.  Returns at once; :meth:`drain` waits."""

        def stop() -> None:
            for server in self._servers:
                server.close()
            for session in list(self._sessions):
                session.drain()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(stop)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every session to end; True if all did.  Past it, a
        session still open (a client trickling its message) gets its 421 and is closed: it
        had no reply to its DATA, so its client keeps the message and sends it again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(s.transport is not None for s in list(self._sessions)):
                return True
            time.sleep(0.05)

        def cut() -> None:
            for session in list(self._sessions):
                session._goodbye()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(cut)
        return False

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for server in self._servers:
                await server.wait_closed()
            await self.loop.shutdown_default_executor()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self._servers.clear()
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


def submission_factory(
    handler: SubmissionHandler,
    settings: Settings,
    tls: ssl.SSLContext,
    *,
    implicit_tls: bool,
    client_limits: SmtpClientLimits | None = None,
) -> Callable[[], SMTP]:
    def make() -> SMTP:
        return SealpostSMTP(
            handler,
            client_limits=client_limits,
            hostname=settings.hostname,
            ident="Sealpost ESMTP certified mail",
            data_size_limit=settings.smtp_max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            require_starttls=False,  # AUTH needs TLS; trusted relay networks may not use it
            tls_context=None if implicit_tls else tls,
            auth_required=False,  # MAIL checks: AUTH or a trusted relay network
            # aiosmtpd only knows STARTTLS; on the implicit-TLS port the whole session is TLS
            auth_require_tls=not implicit_tls,
            authenticator=handler.authenticator,
            timeout=300,
        )

    return make
