"""Tables of the evidence ledger: records, Merkle nodes, the log state, signed tree heads
and the X.509 certificates of seals.

Collected with the other domains' tables in ``sealpost.schema``; Alembic migrations
create them (``sealpost/db/migrations``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from sealpost.db.metadata import BigInt, metadata

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
    Column("note_signature", LargeBinary),
)


x509_certificates = Table(
    "x509_certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("pem", Text, nullable=False),
)
