"""Rate limits: token buckets by key (a tenant, a client IP), in this process's memory.

A :class:`Rate` of ``N/period`` lets a key spend up to N at once (the burst), then refills
N per period, continuously.  :meth:`RateLimiter.take` answers at once with how long to wait
(0: go ahead), which becomes HTTP ``Retry-After`` (RFC 9110 §10.2.3) or an SMTP 421.  The
clock is injectable, so tests move time instead of sleeping.  Limits are per process: N
replicas (or SMTP acceptor processes) behind a balancer let N times as much through.

Pure: no I/O, no settings; the foundation layer under ``config``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {
    **dict.fromkeys(("s", "second"), 1.0),
    **dict.fromkeys(("m", "minute"), 60.0),
    **dict.fromkeys(("h", "hour"), 3600.0),
    **dict.fromkeys(("d", "day"), 86400.0),
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")

MAX_KEYS = 100_000
"""Keys remembered per limiter; past that the least recently seen are forgotten (a forgotten
key starts again with a full bucket), so a flood of addresses cannot exhaust memory."""


@dataclass(frozen=True)
class Rate:
    """``count`` events per ``period`` seconds, ``count`` of them at once."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"600/minute"``, ``"5/15m"``, ``"100/10s"``, ``"20/hour"``."""
        found = _RATE.match(text.lower())
        unit = _UNITS.get(found.group(3)) if found else None
        if found is None or unit is None:
            raise ValueError(
                f"{text!r} is not a rate: write COUNT/PERIOD, e.g. 600/minute, 5/15m, 100/10s"
            )
        count, period = int(found.group(1)), float(found.group(2) or 1) * unit
        if count < 1 or period <= 0:
            raise ValueError(f"{text!r}: the count and the period must be positive")
        return cls(count, period)

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def client_key(address: str) -> str:
    """The key of a client address: an IPv4 address, or the /64 of an IPv6 one (a host is
    usually given a whole /64, RFC 6177: per-address limits would not hold it).  Anything
    else (a name a proxy header gave) is keyed by its digest: never a key of any size."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "name:" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """Token buckets of one :class:`Rate`, one per key; safe to share between threads."""

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rate = rate
        self.clock = clock
        """Seconds, monotonic; tests replace it to move time."""
        self._per_second = rate.count / rate.period
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens, time of the last update), least recently seen first."""
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one for ``key``: 0.0 when allowed, else the seconds until one is available
        (nothing is spent then: a refused client does not dig itself deeper)."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.rate.count), now))
            tokens = min(float(self.rate.count), tokens + max(now - then, 0.0) * self._per_second)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self._per_second
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return wait

    def remembered(self) -> int:
        """How many keys this limiter holds a bucket for."""
        return len(self._buckets)


def retry_after(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header: never 0 for a refusal."""
    return max(1, math.ceil(wait))


def limiter(
    rate: Rate | None, *, clock: Callable[[], float] = time.monotonic
) -> RateLimiter | None:
    """A limiter for ``rate``, or None when the limit is off."""
    return None if rate is None else RateLimiter(rate, clock=clock)
