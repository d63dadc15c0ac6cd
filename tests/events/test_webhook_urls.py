"""Webhook URLs are checked at registration as strictly as at each send: every spelling of a
loopback or private address, and every name that resolves to one, is refused with a 422 that
names it; a public address, or a name not resolvable now, is accepted (each send checks
again)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.config import Settings
from sealpost.errors import InvalidInput
from sealpost.events.webhooks.endpoints import checked_url

STRICT = Settings(_env_file=None, webhook_allow_private_networks=False)  # type: ignore[call-arg]
OPEN = Settings(_env_file=None, webhook_allow_private_networks=True)  # type: ignore[call-arg]

DISGUISED_LOOPBACK = [
    "http://2130706433/hook",  # decimal
    "http://0x7f000001/hook",  # hexadecimal
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",  # short form
    "http://0/hook",  # 0.0.0.0, "this host"
    "http://127.0.0.1./hook",  # trailing dot
    "http://localhost./hook",
    "http://api.localhost/hook",
    "http://[::1]:8443/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata, link-local
]


@pytest.mark.parametrize("url", DISGUISED_LOOPBACK)
def test_every_spelling_of_a_private_address_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="is not a public address"):
        checked_url(STRICT, url)
    assert checked_url(OPEN, url) == url  # the operator may allow private networks


def test_a_name_from_the_hosts_file_that_points_inside_is_refused() -> None:
    name = socket.gethostname()
    addresses = {a[4][0] for a in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    assert addresses, "the machine's own name resolves (hosts file)"
    with pytest.raises(InvalidInput, match=name):
        checked_url(STRICT, f"https://{name}/hook")


def test_public_addresses_and_unresolvable_names_are_accepted() -> None:
    assert checked_url(STRICT, "https://93.184.216.34/hook") == "https://93.184.216.34/hook"
    # no DNS answer now (closed network, or a name not yet published): each send checks it
    unresolvable = "https://crm.acme.invalid/hooks/sealpost"
    assert checked_url(STRICT, unresolvable) == unresolvable


@pytest.fixture
def api(sealpost: Sealpost) -> Iterator[TestClient]:
    assert sealpost.settings.webhook_allow_private_networks is False
    with TestClient(create_app(sealpost, start_background=False)) as client:
        yield client


def test_registration_answers_422_naming_the_host(
    api: TestClient, sealpost: Sealpost, tenant_id: str
) -> None:
    key = {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}
    refused = api.post("/v1/webhooks", headers=key, json={"url": "http://0x7f000001/hook"})
    assert refused.status_code == 422
    assert "0x7f000001 is not a public address (127.0.0.1" in refused.json()["detail"]
    assert api.get("/v1/webhooks", headers=key).json()["items"] == []
    accepted = api.post("/v1/webhooks", headers=key, json={"url": "https://93.184.216.34/h"})
    assert accepted.status_code == 201, accepted.text
