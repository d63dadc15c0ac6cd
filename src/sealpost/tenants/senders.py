"""Who may send: SMTP credentials, trusted relay networks and verified tenant domains.

SMTP passwords are generated (never chosen), shown once and stored as scrypt hashes (RFC 7914):
unlike API keys they travel in AUTH PLAIN/LOGIN and are typed into mail clients, so a slow
hash is worth its cost; a verified password is cached briefly in memory so a busy relay does
not pay scrypt per connection.  Relay networks are the Postfix ``mynetworks`` idea: a
company's own mail server, by IP, may submit for its tenant without AUTH.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.errors import Conflict, InvalidInput, NotFound
from sealpost.tenants.repository import Tenant
from sealpost.tenants.tables import smtp_credentials, smtp_networks, tenant_domains, tenants

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_CACHE_SECONDS = 30.0  # a revoked credential stops working everywhere within this


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class SmtpCredential:
    username: str
    password: str
    """Shown once, when issued."""


@dataclass(frozen=True)
class TenantDomain:
    tenant_id: str
    domain: str
    dkim_selector: str
    dkim_private_key: bytes
    dkim_public_record: str
    pinned_keys: dict[str, str]
    """selector -> DKIM TXT record pinned by the operator for inbound verification."""


class SenderRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, bytes], tuple[float, Tenant]] = {}
        self._networks: tuple[float, list[tuple[IpNetwork, Tenant]]] | None = None
        self._domains: dict[str, tuple[float, frozenset[str]]] = {}

    # -- SMTP credentials -------------------------------------------------------------------

    def issue_smtp_credential(self, tenant_id: str, username: str | None = None) -> SmtpCredential:
        username = (username or f"sp-{secrets.token_hex(4)}").strip()
        if not username or len(username) > 200 or any(c.isspace() for c in username):
            raise InvalidInput("an SMTP username is 1 to 200 characters without spaces")
        password = secrets.token_urlsafe(24)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(smtp_credentials).values(
                        id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        username=username,
                        password_hash=hash_password(password),
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            raise Conflict(f"the SMTP username {username!r} is taken") from None
        return SmtpCredential(username, password)

    def revoke_smtp_credential(self, username: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(smtp_credentials)
                .where(smtp_credentials.c.username == username)
                .where(smtp_credentials.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        if not done:
            raise NotFound(f"no active SMTP credential {username!r}")
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if k[0] != username}

    def authenticate_smtp(self, username: str, password: str) -> Tenant | None:
        """The tenant of a valid, unrevoked credential, else None (same cost either way)."""
        key = (username, hashlib.sha256(password.encode()).digest())
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(key)
        if cached and cached[0] > now:
            return cached[1]
        query = (
            select(smtp_credentials.c.password_hash, tenants.c.id, tenants.c.name)
            .join(tenants, tenants.c.id == smtp_credentials.c.tenant_id)
            .where(smtp_credentials.c.username == username)
            .where(smtp_credentials.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        # one hash either way, so timing does not tell which usernames exist
        stored = row.password_hash if row is not None else _DUMMY_HASH
        if not check_password(password, stored) or row is None:
            return None
        tenant = Tenant(row.id, row.name)
        with self._lock:
            self._verified[key] = (now + _CACHE_SECONDS, tenant)
        return tenant

    # -- relay networks ---------------------------------------------------------------------

    def add_network(self, tenant_id: str, network: str) -> str:
        try:
            parsed = ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise InvalidInput(f"not an IP network: {network!r}") from None
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(smtp_networks).values(
                        id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        network=str(parsed),
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            raise Conflict(f"the network {parsed} already belongs to a tenant") from None
        self._networks = None
        return str(parsed)

    def tenant_for_client(self, client_ip: str) -> Tenant | None:
        """The tenant whose relay network holds ``client_ip`` (most specific wins)."""
        now = time.monotonic()
        cache = self._networks
        if cache is None or cache[0] < now:
            query = select(smtp_networks.c.network, tenants.c.id, tenants.c.name).join(
                tenants, tenants.c.id == smtp_networks.c.tenant_id
            )
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
            nets = [(ipaddress.ip_network(r.network), Tenant(r.id, r.name)) for r in rows]
            nets.sort(key=lambda item: item[0].prefixlen, reverse=True)
            cache = (now + 5.0, nets)
            self._networks = cache
        assert cache is not None
        return _network_tenant(cache[1], client_ip)

    def cached_tenant_for_client(self, client_ip: str) -> tuple[bool, Tenant | None]:
        """:meth:`tenant_for_client` from the cache alone, never the database, so that the
        SMTP event loop can ask without a thread hop: (False, None) when the cache is stale
        (then ask :meth:`tenant_for_client` in a thread)."""
        cache = self._networks
        if cache is None or cache[0] < time.monotonic():
            return False, None
        return True, _network_tenant(cache[1], client_ip)

    # -- domains ----------------------------------------------------------------------------

    def add_domain(
        self,
        tenant_id: str,
        domain: str,
        *,
        selector: str,
        private_key_pem: bytes,
        public_record: str,
    ) -> TenantDomain:
        domain = domain.strip().lower().rstrip(".")
        if not domain or "." not in domain or len(domain) > 253:
            raise InvalidInput(f"not a domain name: {domain!r}")
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(tenant_domains).values(
                        id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        domain=domain,
                        dkim_selector=selector,
                        dkim_private_key=private_key_pem.decode("ascii"),
                        dkim_public_record=public_record,
                        pinned_keys="{}",
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            raise Conflict(f"the domain {domain} is already registered") from None
        self._domains.pop(tenant_id, None)
        return self.domain(domain)

    def pin_key(self, domain: str, selector: str, record: str) -> None:
        """Pin the public key a tenant's own mail server signs with (inbound DKIM)."""
        found = self.domain(domain)
        pins = {**found.pinned_keys, selector: record}
        with self.engine.begin() as conn:
            conn.execute(
                update(tenant_domains)
                .where(tenant_domains.c.domain == found.domain)
                .values(pinned_keys=json.dumps(pins, sort_keys=True))
            )

    def domain(self, domain: str) -> TenantDomain:
        found = self.find_domain(domain)
        if found is None:
            raise NotFound(f"no registered domain {domain!r}")
        return found

    def find_domain(self, domain: str) -> TenantDomain | None:
        query = select(tenant_domains).where(
            tenant_domains.c.domain == domain.strip().lower().rstrip(".")
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return TenantDomain(
            tenant_id=row.tenant_id,
            domain=row.domain,
            dkim_selector=row.dkim_selector,
            dkim_private_key=row.dkim_private_key.encode("ascii"),
            dkim_public_record=row.dkim_public_record,
            pinned_keys=json.loads(row.pinned_keys),
        )

    def sender_domains(self, tenant_id: str) -> frozenset[str]:
        """The tenant's registered domains (cached a few seconds: asked for every message)."""
        now = time.monotonic()
        cached = self._domains.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        query = select(tenant_domains.c.domain).where(tenant_domains.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            names = frozenset(conn.execute(query).scalars())
        self._domains[tenant_id] = (now + 5.0, names)
        return names

    def tenant_domains(self, tenant_id: str) -> list[TenantDomain]:
        query = select(tenant_domains.c.domain).where(tenant_domains.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            names = conn.execute(query).scalars().all()
        return [self.domain(n) for n in names]


def _network_tenant(networks: list[tuple[IpNetwork, Tenant]], client_ip: str) -> Tenant | None:
    """The tenant of the most specific network holding ``client_ip`` (``networks`` sorted
    most specific first)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    for network, tenant in networks:
        if address.version == network.version and address in network:
            return tenant
    return None
