"""Shared fixtures: a database per test on SQLite and on the real PostgreSQL, local keys.

Tests that need a service skip with the reason when it is absent, and fail instead under
``SEALPOST_REQUIRE_SERVICES=1`` (set by ``.ci/run``) so CI can never go green by skipping.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.ledger.timestamps import EmbeddedTimeStamper, TimeStamper
from sealpost.logging import configure_logging
from sealpost.pki import asn1
from sealpost.pki.keys import LocalIdentities, init_keys, load_local_identities
from sealpost.pki.tsa import EmbeddedTSA
from tests.support.etsi_names import guard_appended_records
from tests.support.s3 import S3Server, moto_server

configure_logging("WARNING")


@pytest.fixture(scope="session", autouse=True)
def _garbage_collected_before_the_end() -> Iterator[None]:
    """Free what the tests left in reference cycles while the session still runs.

    pytest collects garbage once more at the very end (``pytest_unconfigure``) and turns a
    ResourceWarning raised there, such as a database connection of a long-finished test's
    engine found in a cycle, into an uncaught error after the summary: a green run would exit
    1.  Each test's own leaks are still reported at that test (its ``__del__`` warnings are
    errors); this only sweeps the remains of cycles no test is left to answer for."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# Property tests (hypothesis): ``ci``, the default, draws the same examples on every run (a red
# CI is reproducible, a green one is not luck) and keeps no example database; ``fuzz`` is for
# long local runs: random, 50 times the examples of every tests/fuzz property, failures saved
# in .hypothesis/.  Select with ``pytest --hypothesis-profile=fuzz`` or SEALPOST_HYPOTHESIS.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("fuzz", max_examples=5000, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("SEALPOST_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _only_table_2_events_under_the_etsi_uri() -> Iterator[None]:
    """Issue 13: every event URI the suite emits under the ETSI base is one of the 22 of
    ETSI EN 319 522-3 Table 2 (checked on every record the ledger stores)."""
    with guard_appended_records():
        yield


def pytest_configure(config: pytest.Config) -> None:
    """The test suite is an entry point too: the process-wide start-up of ``sealpost.cli.main``
    and ``sealpost.app.build`` (tests call pyHanko and the TSA directly, without either)."""
    asn1.install()


POSTGRES_URL = os.environ.get(
    "SEALPOST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require_service(name: str, problem: str) -> None:
    """Skip (or fail, under SEALPOST_REQUIRE_SERVICES=1) because ``name`` is not usable."""
    message = f"{name} is not available: {problem}"
    if os.environ.get("SEALPOST_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (SEALPOST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def _s3_server_or_problem() -> Iterator[S3Server | str]:
    with moto_server() as found:
        yield found


@pytest.fixture
def s3_server(_s3_server_or_problem: S3Server | str) -> S3Server:
    """A real S3 API server on 127.0.0.1 (moto in server mode, one process per test session);
    skips, or fails under SEALPOST_REQUIRE_SERVICES=1, when it cannot start."""
    if isinstance(_s3_server_or_problem, str):
        require_service("an S3 API server (moto)", _s3_server_or_problem)
    assert isinstance(_s3_server_or_problem, S3Server)
    return _s3_server_or_problem


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_available() -> str | None:
    return _postgres_problem()


@pytest.fixture
def postgres_schema_url(postgres_available: str | None) -> Iterator[str]:
    """A fresh, empty schema on the real PostgreSQL, dropped after the test."""
    if postgres_available:
        require_service("PostgreSQL", postgres_available)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on SQLite (WAL) and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sealpost.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys") / "keys"
    init_keys(directory)
    return directory


@pytest.fixture(scope="session")
def identities(keys_dir: Path) -> LocalIdentities:
    """The local PKI of ``keys_dir``: seal, TSA and their root."""
    return load_local_identities(keys_dir)


@pytest.fixture(scope="session")
def root(identities: LocalIdentities) -> x509.Certificate:
    return identities.root


@pytest.fixture(scope="session")
def timestamper(identities: LocalIdentities) -> TimeStamper:
    """The embedded TSA, called in-process (no HTTP)."""
    return EmbeddedTimeStamper(EmbeddedTSA(identities.tsa))


@pytest.fixture
def settings(tmp_path: Path, database_url: str, keys_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=database_url,
        keys_dir=keys_dir,
        batch_window_ms=10,
        ledger_origin="test.sealpost.local/ledger",
    )


@pytest.fixture
def sealpost(settings: Settings) -> Iterator[Sealpost]:
    sp = build(settings)
    try:
        yield sp
    finally:
        sp.stop_background()
        sp.engine.dispose()


@pytest.fixture
def tenant_id(sealpost: Sealpost) -> str:
    return sealpost.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}").id


from tests.support.mail import (  # noqa: E402  (fixtures for every package)
    mail_client,
    mail_env,
    mail_key,
    mail_overrides,
    replies,
)

__all__ = ["mail_client", "mail_env", "mail_key", "mail_overrides", "replies"]
