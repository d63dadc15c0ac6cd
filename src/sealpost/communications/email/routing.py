"""Where a message goes next: a configured route, the smarthost, or the domain's MX hosts.

RFC 5321 §5.1: MX records in preference order; no MX means the domain's own address
(implicit MX); a null MX (RFC 7505, ``0 .``) means the domain accepts no mail at all, a
permanent failure.  A DNS timeout is temporary: the message is retried.

Routes and the smarthost are for operators who relay through their own MTA and for tests
(recipient servers on 127.0.0.1).  A per-domain *route* ``host:port`` names the recipient
domain's own server (status "delivered"); ``relay:host:port`` and the *smarthost* are
intermediaries (status "relayed").  Either 250 is RelayToNonERDS evidence: none of these
servers is a registered delivery service.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from sealpost.config import Settings

MX, ROUTE, SMARTHOST = "mx", "route", "smarthost"


@dataclass(frozen=True)
class NextHop:
    host: str
    port: int
    kind: str
    """"mx", "route" or "smarthost": whether its acceptance is consignment or relay."""


class RoutingError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def parse_host_port(value: str, default_port: int = 25) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):  # [::1]:2525
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


class Router:
    def __init__(self, settings: Settings) -> None:
        self.routes = {k.lower().rstrip("."): v for k, v in settings.delivery_routes.items()}
        self.smarthost = settings.delivery_smarthost
        self.resolver = dns.asyncresolver.Resolver(configure=not settings.dns_nameservers)
        if settings.dns_nameservers:
            self.resolver.nameservers = list(settings.dns_nameservers)
        self.resolver.lifetime = 10.0

    async def next_hops(self, domain: str) -> list[NextHop]:
        domain = domain.lower().rstrip(".")
        if domain in self.routes:
            target = self.routes[domain]
            kind = ROUTE
            if target.startswith("relay:"):  # an intermediary MTA, not the recipient's server
                target, kind = target[len("relay:") :], SMARTHOST
            host, port = parse_host_port(target)
            return [NextHop(host, port, kind)]
        if self.smarthost:
            host, port = parse_host_port(self.smarthost, 587)
            return [NextHop(host, port, SMARTHOST)]
        return await self._mx(domain)

    async def _mx(self, domain: str) -> list[NextHop]:
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise RoutingError(f"the domain {domain} does not exist", permanent=True) from None
        except dns.resolver.NoAnswer:
            return [NextHop(domain, 25, MX)]  # implicit MX
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise RoutingError(f"DNS lookup of {domain} failed: {exc}", permanent=False) from None
        records = sorted(answer, key=lambda r: r.preference)
        hosts = [str(r.exchange).rstrip(".") for r in records]
        if hosts in ([""], ["."]) or (len(records) == 1 and str(records[0].exchange) == "."):
            raise RoutingError(f"{domain} publishes a null MX: it accepts no mail", permanent=True)
        return [NextHop(h, 25, MX) for h in hosts if h]
