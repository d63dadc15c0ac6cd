"""Per-client-IP limits of the SMTP listeners: open connections, new connections, commands.

A client over a limit gets ``421`` and the connection is closed (RFC 5321 §3.8 and §4.2.3:
"Service not available, closing transmission channel"; a transient code, so a real MTA
queues the message and retries later).  Three limits, each off when its setting is empty:

* open connections per IP (``SEALPOST_SMTP_MAX_CONNECTIONS_PER_IP``): refused at once,
  instead of the greeting;
* new connections per IP and period (``SEALPOST_RATE_LIMIT_SMTP_CONNECTIONS_PER_IP``);
* commands per IP and period, counted until the session authenticates
  (``SEALPOST_RATE_LIMIT_SMTP_COMMANDS_PER_IP``): an authenticated tenant is known and
  accountable, a client that has not authenticated has no business sending many.

A tenant's trusted relay networks (``sealpost tenant smtp-network``) are exempt: that is the
tenant's own MTA, as Postfix exempts ``$mynetworks``.  AUTH brute force has its own lockout
(``smtp_server.AuthLimiter``).  The counts live in this process (one per SMTP acceptor).
Called on the listeners' event loop only, except ``exempt`` (a database read: in a thread,
unless ``exempt_cached`` knows the answer).
"""

from __future__ import annotations

from collections.abc import Callable

from sealpost.config import Settings
from sealpost.ratelimit import RateLimiter, client_key, limiter, retry_after

TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address; try again later"


def _too_fast(what: str, wait: float) -> str:
    return f"421 4.7.0 Too many {what} from your address; try again in {retry_after(wait)} s"


class SmtpClientLimits:
    def __init__(
        self,
        *,
        max_connections: int | None,
        connections: RateLimiter | None,
        commands: RateLimiter | None,
        exempt: Callable[[str], bool],
        exempt_cached: Callable[[str], bool | None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.connections = connections
        self.commands = commands
        self.exempt = exempt
        """Whether a client IP is exempt (a trusted relay network). Blocking."""
        self.exempt_cached = exempt_cached or (lambda _ip: None)
        """The same from a cache, never blocking; None: not known without :attr:`exempt`."""
        self._open: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        exempt: Callable[[str], bool],
        exempt_cached: Callable[[str], bool | None] | None = None,
    ) -> SmtpClientLimits:
        return cls(
            exempt_cached=exempt_cached,
            max_connections=settings.smtp_max_connections_per_ip,
            connections=limiter(settings.rate_limit_smtp_connections_per_ip),
            commands=limiter(settings.rate_limit_smtp_commands_per_ip),
            exempt=exempt,
        )

    def open(self, ip: str) -> str | None:
        """Admit a new connection from ``ip`` (counted open until :meth:`close`), or the 421
        that refuses it."""
        key = client_key(ip)
        if self.max_connections is not None and self._open.get(key, 0) >= self.max_connections:
            return TOO_MANY_CONNECTIONS
        if self.connections is not None and (wait := self.connections.take(key)):
            return _too_fast("connections", wait)
        self._open[key] = self._open.get(key, 0) + 1
        return None

    def close(self, ip: str) -> None:
        key = client_key(ip)
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def command(self, ip: str) -> str | None:
        """Count a command of an unauthenticated session from ``ip``: None, or the 421."""
        if self.commands is not None and (wait := self.commands.take(client_key(ip))):
            return _too_fast("commands", wait)
        return None

    def open_connections(self, ip: str) -> int:
        return self._open.get(client_key(ip), 0)
