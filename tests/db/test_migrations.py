"""Alembic migrations build exactly the schema the code describes, up and down, on both DBs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect, text

from sealpost.db import migrate
from sealpost.db.engine import make_test_engine
from sealpost.schema import UNMANAGED, metadata


@pytest.mark.filterwarnings(
    # SQLite's reflection skips expression indexes (0029's lower(recipient)); Alembic then
    # leaves them out of the comparison there, PostgreSQL compares them
    "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning",
    "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning",
)
def test_upgrade_matches_the_tables_and_downgrade_undoes_it(database_url: str) -> None:
    engine = make_test_engine(database_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # idempotent: every start runs it
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_name": lambda name, _kind, _parent: name not in UNMANAGED},
        )
        diff = compare_metadata(context, metadata)
    assert diff == []
    assert {"evidence_records", "tree_heads", "ledger_nodes", "tenants"} <= set(
        inspect(engine).get_table_names()
    )
    _downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_concurrent_upgrades_of_a_fresh_postgresql_schema_serialise(
    postgres_schema_url: str,
) -> None:
    """Every ``serve`` migrates at start: two processes starting at once on a fresh schema
    all succeed, one migrating while the others wait on the advisory lock and then find the
    schema at head.  (Without the lock the others fail: ``relation ... already exists``.)"""
    engines = [make_test_engine(postgres_schema_url) for _ in range(3)]
    for engine in engines:  # without the lock, concurrent DDL can wait forever: fail instead

        @event.listens_for(engine, "connect")
        def _bounded(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '60s'")
            dbapi_connection.commit()

    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(engine: Engine) -> None:
        start.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an upgrade is stuck (a lock wait cycle)"
    assert errors == []
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert _rows(engines[0], "SELECT version_num FROM alembic_version") == [{"version_num": head}]
    with engines[0].connect() as conn:  # no session still holds the migration lock
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = :key AND objid = hashtext(current_schema())::oid"
            ),
            {"key": migrate.MIGRATION_LOCK},
        ).scalar()
        assert held == 0
    for engine in engines:
        engine.dispose()


def _downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    config = migrate.alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=72)


def _rows(engine: Engine, query: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(query))]


def _when(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_0006_moves_links_sessions_and_code_state_to_the_access_tables_and_back(
    database_url: str,
) -> None:
    """Links already emailed, pages already open and code counters survive the upgrade (and
    the downgrade): a locked signer stays locked, a spent link stays spent."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'Acme', :now)"),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO signature_processes (id, tenant_id, title, status, signing_order,"
                " consent_text, consent_sha256, created_at, updated_at, expires_at)"
                " VALUES ('p1', 't1', 'Quote', 'in_progress', 'parallel', 'ok', 'c', :now,"
                " :now, :later)"
            ),
            {"now": NOW, "later": LATER},
        )
        for signer, status, otp in (
            ("s1", "locked", {"hash": "h" * 64, "attempts": 5, "sends": 2, "to": "j@x.test"}),
            ("s2", "notified", None),
        ):
            conn.execute(
                text(
                    "INSERT INTO signature_signers (id, process_id, number, name, email, role,"
                    " sign_order, identification, status, otp_hash, otp_expires_at,"
                    " otp_attempts, otp_sends, otp_sent_to, otp_communication_id)"
                    " VALUES (:id, 'p1', :number, 'Jane', 'j@x.test', 'signer', 1, 'email_otp',"
                    " :status, :hash, :expires, :attempts, :sends, :to, :comm)"
                ),
                {
                    "id": signer,
                    "number": int(signer[1]),
                    "status": status,
                    "hash": otp and otp["hash"],
                    "expires": otp and NOW,
                    "attempts": otp["attempts"] if otp else 0,
                    "sends": otp["sends"] if otp else 0,
                    "to": otp and otp["to"],
                    "comm": otp and "c1",
                },
            )
        for token, kind, signer, used in (
            ("a" * 64, "link", "s1", NOW),
            ("b" * 64, "session", "s1", None),
            ("c" * 64, "link", "s2", None),
        ):
            conn.execute(
                text(
                    "INSERT INTO signing_links (token_sha256, kind, signer_id, created_at,"
                    " expires_at, used_at, ip) VALUES (:t, :k, :s, :now, :later, :used, '::1')"
                ),
                {"t": token, "k": kind, "s": signer, "now": NOW, "later": LATER, "used": used},
            )

    migrate.upgrade(engine)
    links = _rows(engine, "SELECT * FROM access_links ORDER BY token_sha256")
    assert [(r["kind"], r["party_id"], r["used_at"] is not None) for r in links] == [
        ("link", "s1", True),
        ("session", "s1", False),
        ("link", "s2", False),
    ]
    assert {(r["tenant_id"], r["subject_type"], r["subject_id"], r["ip"]) for r in links} == {
        ("t1", "signature_process", "p1", "::1")
    }
    assert all(_when(r["expires_at"]) == LATER for r in links)
    challenges = _rows(engine, "SELECT * FROM access_challenges")
    assert len(challenges) == 1  # s2 never had a code
    moved = challenges[0]
    assert (moved["party_id"], moved["channel"], moved["code_hash"]) == ("s1", "email", "h" * 64)
    assert (moved["attempts"], moved["sends"], moved["sent_to"]) == (5, 2, "j@x.test")
    assert moved["communication_id"] == "c1" and _when(moved["expires_at"]) == NOW
    columns = {c["name"] for c in inspect(engine).get_columns("signature_signers")}
    assert not any(c.startswith("otp_") for c in columns)
    assert "signing_links" not in inspect(engine).get_table_names()

    _downgrade(engine, "0004")
    back = _rows(engine, "SELECT * FROM signing_links ORDER BY token_sha256")
    assert [(r["kind"], r["signer_id"], r["used_at"] is not None) for r in back] == [
        ("link", "s1", True),
        ("session", "s1", False),
        ("link", "s2", False),
    ]
    signers = _rows(engine, "SELECT * FROM signature_signers ORDER BY id")
    assert [(s["otp_attempts"], s["otp_sends"], s["otp_sent_to"]) for s in signers] == [
        (5, 2, "j@x.test"),
        (0, 0, None),
    ]
    assert signers[0]["otp_hash"] == "h" * 64 and signers[0]["status"] == "locked"
    assert "access_links" not in inspect(engine).get_table_names()
    engine.dispose()


def test_0007_adds_the_active_content_permission_off_for_existing_tenants(
    database_url: str,
) -> None:
    """A tenant's signing settings survive; active content is refused for them until they
    allow it; the downgrade drops the permission and keeps the origins."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'Acme', :now)"),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO tenant_signing_settings (tenant_id, frame_ancestors, updated_at)"
                """ VALUES ('t1', '["https://crm.example.com"]', :now)"""
            ),
            {"now": NOW},
        )
    migrate.upgrade(engine)
    (row,) = _rows(engine, "SELECT * FROM tenant_signing_settings")
    assert (row["frame_ancestors"], row["allow_active_content"]) == (
        '["https://crm.example.com"]',
        0,
    )
    _downgrade(engine, "0006")
    (row,) = _rows(engine, "SELECT * FROM tenant_signing_settings")
    assert "allow_active_content" not in row
    assert row["frame_ancestors"] == '["https://crm.example.com"]'
    engine.dispose()


def test_0008_adds_the_sms_tables_and_the_downgrade_drops_them(database_url: str) -> None:
    """Certified SMS: messages, segments and raw reports come and go with 0008; nothing
    existing changes."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0007")
    migrate.upgrade(engine, "0008")
    names = set(inspect(engine).get_table_names())
    assert {"sms_messages", "sms_segments", "sms_reports"} <= names
    segment_columns = {c["name"] for c in inspect(engine).get_columns("sms_segments")}
    assert {"sms_id", "number", "message_id"} <= segment_columns
    _downgrade(engine, "0007")
    names = set(inspect(engine).get_table_names())
    assert not {"sms_messages", "sms_segments", "sms_reports"} & names
    assert "communications" in names
    engine.dispose()


def test_0009_adds_the_pickup_tables_and_the_downgrade_drops_them(database_url: str) -> None:
    """Existing communications are untouched (direct deliveries); the pickup tables come and
    go with 0009, and a pickup row refers to its communication."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0008")
    migrate.upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {"pickups", "pickup_settings"} <= names
    columns = {c["name"] for c in inspect(engine).get_columns("pickups")}
    assert {"state", "challenge_hash", "expires_at", "identified_session"} <= columns
    _downgrade(engine, "0008")
    names = set(inspect(engine).get_table_names())
    assert not {"pickups", "pickup_settings"} & names
    assert "communications" in names
    engine.dispose()


def test_0010_lets_a_tenant_hide_the_sender_off_for_existing_settings(database_url: str) -> None:
    """A tenant's pickup defaults survive the upgrade with the sender shown (as before) and
    the downgrade drops only the new column."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'Acme', :now)"),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO pickup_settings (tenant_id, delivery, identification, consent,"
                " policy, updated_at) VALUES ('t1', 'pickup', 'email_otp', 'consent', 'es', :now)"
            ),
            {"now": NOW},
        )
    migrate.upgrade(engine)
    (row,) = _rows(engine, "SELECT * FROM pickup_settings")
    assert (row["policy"], row["hide_sender"]) == ("es", 0)
    _downgrade(engine, "0009")
    (row,) = _rows(engine, "SELECT * FROM pickup_settings")
    assert "hide_sender" not in row and row["delivery"] == "pickup"
    engine.dispose()


def test_0011_adds_the_sms_notice_columns_and_the_downgrade_drops_them(database_url: str) -> None:
    """Pickups made before 0011 were noticed by email: the channel column defaults to it; the
    SMS notice's id and status come and go with 0011, the rest of the pickup stays."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0010")
    migrate.upgrade(engine, "0011")
    columns = {c["name"]: c for c in inspect(engine).get_columns("pickups")}
    assert {"notice_channels", "notice_sms_id", "notice_sms_status"} <= set(columns)
    assert columns["notice_channels"]["nullable"] is False
    assert "email" in str(columns["notice_channels"]["default"])
    _downgrade(engine, "0010")
    columns = {c["name"]: c for c in inspect(engine).get_columns("pickups")}
    assert not {"notice_channels", "notice_sms_id", "notice_sms_status"} & set(columns)
    assert {"notice_communication_id", "notice_status"} <= set(columns)
    engine.dispose()


def test_0012_adds_sms_resume_and_certificate_columns_and_the_downgrade_drops_them(
    database_url: str,
) -> None:
    """Existing segments count 0 unanswered sends, existing messages have no certificate due;
    sms_certificates comes and goes with 0012."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', :at)"), {"at": NOW}
        )
        conn.execute(
            text(
                "INSERT INTO sms_messages (id, tenant_id, status, sender, recipient, text, "
                "text_sha256, encoding, segment_count, details, submitted_at, updated_at) "
                "VALUES ('s', 't', 'delivered', 'S', '+34612345678', 'hola', 'x', 'gsm7', 1, "
                "'{}', :at, :at)"
            ),
            {"at": NOW},
        )
        conn.execute(
            text("INSERT INTO sms_segments (sms_id, number, state) VALUES ('s', 0, 'delivered')")
        )
    migrate.upgrade(engine, "0012")
    assert "sms_certificates" in set(inspect(engine).get_table_names())
    assert _rows(engine, "SELECT unanswered FROM sms_segments") == [{"unanswered": 0}]
    assert _rows(engine, "SELECT certificate_due, certificate_version FROM sms_messages") == [
        {"certificate_due": 0, "certificate_version": 0}
    ]
    _downgrade(engine, "0011")
    assert "sms_certificates" not in set(inspect(engine).get_table_names())
    columns = {c["name"] for c in inspect(engine).get_columns("sms_segments")}
    assert "unanswered" not in columns and "state" in columns
    assert _rows(engine, "SELECT id FROM sms_messages") == [{"id": "s"}]
    _downgrade(engine)
    engine.dispose()


def test_0013_adds_the_sms_text_nonce_and_the_downgrade_drops_it(database_url: str) -> None:
    """An SMS sent before 0013 keeps its plain digest (no nonce); the column comes and goes
    with 0013 and the SMS row stays."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0012")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'Acme', :now)"),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO sms_messages (id, tenant_id, status, sender, recipient, text, "
                "text_sha256, encoding, segment_count, details, submitted_at, updated_at) "
                "VALUES ('s1', 't1', 'delivered', 'Acme', '+34612345678', 'Hola', :digest, "
                "'gsm7', 1, '{}', :now, :now)"
            ),
            {"now": NOW, "digest": "ab" * 32},
        )
    migrate.upgrade(engine, "0013")
    columns = {c["name"]: c for c in inspect(engine).get_columns("sms_messages")}
    assert "text_nonce" in columns and columns["text_nonce"]["nullable"] is True
    assert _rows(engine, "SELECT text_sha256, text_nonce FROM sms_messages") == [
        {"text_sha256": "ab" * 32, "text_nonce": None}
    ]
    _downgrade(engine, "0012")
    columns = {c["name"]: c for c in inspect(engine).get_columns("sms_messages")}
    assert "text_nonce" not in columns
    assert _rows(engine, "SELECT id, text FROM sms_messages") == [{"id": "s1", "text": "Hola"}]
    engine.dispose()


def test_0014_counts_pickup_resends_and_keeps_the_code_session_and_the_downgrade_drops_them(
    database_url: str,
) -> None:
    """Pickups made before 0014 were resent an unknown number of times: they start at 0; the
    column comes and goes with 0014, the rest of the pickup stays."""
    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0013")
    migrate.upgrade(engine, "0014")
    columns = {c["name"]: c for c in inspect(engine).get_columns("pickups")}
    assert columns["resends"]["nullable"] is False
    assert "0" in str(columns["resends"]["default"])
    codes = {c["name"] for c in inspect(engine).get_columns("access_challenges")}
    assert "code_session" in codes
    _downgrade(engine, "0013")
    codes = {c["name"] for c in inspect(engine).get_columns("access_challenges")}
    assert "code_session" not in codes and "code_hash" in codes
    columns = {c["name"]: c for c in inspect(engine).get_columns("pickups")}
    assert "resends" not in columns
    assert {"notices_sent", "notice_channels"} <= set(columns)
    engine.dispose()


def test_0024_takes_the_journal_tokens_out_of_the_sightings_already_archived(
    database_url: str,
) -> None:
    """An agent reads a sighting's reference: the journal addresses stored before (with their
    tokens, and other tenants' addresses) are redacted; other sightings are untouched."""
    import json

    engine = make_test_engine(database_url)
    migrate.upgrade(engine, "0023")
    old = {
        "transaction": "tx-1",
        "mail_from": "ana@acme.es",
        "rcpt_to": [
            "journal+0123456789abcdef0123456789abcdef@bounces.example.com",
            "journal+fedcba9876543210fedcba9876543210@bounces.example.com",
        ],
        "rcpt_count": 5,
        "client_ip": "192.0.2.25",
    }
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'Acme', :now)"),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO archive_messages (id, tenant_id, sha256, size, archived_at,"
                " direction, thread_id, record_id, source_kind) VALUES ('m1', 't1', :sha, 10,"
                " :now, 'inbound', 'th1', 'r1', 'journal')"
            ),
            {"sha": "0" * 64, "now": NOW},
        )
        for sid, kind, ref in (
            ("s1", "journal", json.dumps(old, sort_keys=True, separators=(",", ":"))),
            ("s2", "imap", "box/INBOX/1/7"),
        ):
            conn.execute(
                text(
                    "INSERT INTO archive_sightings (id, message_id, tenant_id, source_kind,"
                    " source_ref, seen_at) VALUES (:id, 'm1', 't1', :kind, :ref, :now)"
                ),
                {"id": sid, "kind": kind, "ref": ref, "now": NOW},
            )
    migrate.upgrade(engine)
    rows = {r["id"]: r["source_ref"] for r in _rows(engine, "SELECT * FROM archive_sightings")}
    assert "0123456789abcdef" not in str(rows["s1"]) and "fedcba98" not in str(rows["s1"])
    kept = json.loads(str(rows["s1"]))
    assert kept["rcpt_to"] == ["journal+\N{HORIZONTAL ELLIPSIS}@bounces.example.com"]
    assert "rcpt_count" not in kept
    assert (kept["transaction"], kept["mail_from"]) == ("tx-1", "ana@acme.es")
    assert rows["s2"] == "box/INBOX/1/7"
    engine.dispose()
