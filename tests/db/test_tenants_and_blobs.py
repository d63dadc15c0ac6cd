"""Tenants and hashed API keys (the blob store has its own suite: test_blob_conformance.py)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from sealpost.app import Sealpost
from sealpost.errors import Conflict, InvalidInput, NotFound, Unauthorized
from sealpost.tenants.tables import api_keys


def test_api_keys_are_stored_hashed_and_authenticate_their_tenant(sealpost: Sealpost) -> None:
    tenant = sealpost.tenants.create("Acme Utilities")
    issued = sealpost.tenants.issue_api_key(tenant.id, "crm")
    assert issued.secret.startswith("sp_")
    with sealpost.engine.connect() as conn:
        stored = conn.execute(select(api_keys)).all()
    assert len(stored) == 1
    assert issued.secret.encode() not in repr(stored[0]).encode()
    assert bytes(stored[0].secret_sha256) == hashlib.sha256(issued.secret.encode()).digest()
    assert sealpost.tenants.authenticate(issued.secret) == tenant
    for wrong in (issued.secret[:-1] + "x", "", None, "sp_x", issued.secret + "x"):
        with pytest.raises(Unauthorized):
            sealpost.tenants.authenticate(wrong)


def test_tenant_names_are_unique_and_found_by_name_or_id(sealpost: Sealpost) -> None:
    tenant = sealpost.tenants.create("Acme")
    with pytest.raises(Conflict):
        sealpost.tenants.create("Acme")
    with pytest.raises(InvalidInput):
        sealpost.tenants.create("   ")
    assert sealpost.tenants.get("Acme") == sealpost.tenants.get(tenant.id) == tenant
    with pytest.raises(NotFound):
        sealpost.tenants.get("nobody")
