"""Certificates built from real, sealed evidence bundles on a SQLite ledger.

One ledger and one sealed certificate per module: sealing is fast, but the tamper tests all
start from the same genuine PDF, which is the point.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpost.app import Sealpost, build
from sealpost.certificates import render_certificate, seal_pdf
from sealpost.config import Settings
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import LocalIdentities
from tests.certificates.support import ORIGIN, Scenario, Sealed, make_certificate_data


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[Sealpost]:
    """A Sealpost on SQLite: these tests are about the PDF, not the database."""
    directory = tmp_path_factory.mktemp("certificates")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=directory / "data",
        database_url=f"sqlite:///{directory / 'sealpost.db'}",
        keys_dir=keys_dir,
        batch_window_ms=10,
        ledger_origin=ORIGIN,
    )
    sp = build(settings)
    try:
        yield sp
    finally:
        sp.engine.dispose()


@pytest.fixture(scope="module")
def tenant(ledger: Sealpost) -> str:
    return ledger.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}").id


@pytest.fixture(scope="module")
def sealed(
    ledger: Sealpost,
    tenant: str,
    identities: LocalIdentities,
    timestamper: TimeStamper,
) -> Sealed:
    data = make_certificate_data(
        ledger, tenant, Scenario(delays=1, version=2, supersedes_sha256="ab" * 32)
    )
    pdf = seal_pdf(
        render_certificate(data),
        seal=identities.seal,
        timestamper=timestamper,
        trust_roots=[identities.root],
        reason="Evidence certificate",
        location="Sealpost test",
    )
    return Sealed(data, pdf)
