"""Table definitions (SQLAlchemy 2 Core metadata); Alembic migrations create them.

Names follow the domain: a tenant, an API key, an evidence record, a tree head.  Binary hashes
are stored as raw bytes; ids are UUID strings so they read the same in every database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigInt = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("label", String(200), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

evidence_records = Table(
    "evidence_records",
    metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject_type", String(40), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("canonical", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("leaf_index", BigInteger, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_evidence_records_tenant_subject", "tenant_id", "subject_id"),
    Index(
        "ix_evidence_records_pending",
        "seq",
        sqlite_where=text("leaf_index IS NULL"),
        postgresql_where=text("leaf_index IS NULL"),
    ),
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary(32), nullable=False),
)

ledger_state = Table(
    "ledger_state",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("head_time", DateTime(timezone=True)),
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("head_time", DateTime(timezone=True), nullable=False),
    Column("checkpoint", Text, nullable=False),
    Column("signature_algorithm", String(40), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("timestamp_token", LargeBinary, nullable=False),
    Column("seal_chain", Text, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("pem", Text, nullable=False),
)

ledger_leases = Table(
    "ledger_leases",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
