"""Tables of the mail archive: messages (write-once), where each was seen, threads and the
Message-IDs that lead to them, agents, teams and each tenant's archive settings.

Collected in ``sealpost.schema``; created by migration 0019.  The bytes of each message are in
the archive's own blob namespace, named by their SHA-256 (``archive_messages.sha256``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from sealpost.db.metadata import metadata

archive_messages = Table(
    "archive_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("message_id", Text),
    Column("subject", Text, nullable=False, server_default=""),
    Column("from_address", String(320), nullable=False, server_default=""),
    Column("to_addresses", Text, nullable=False, server_default="[]"),
    Column("cc_addresses", Text, nullable=False, server_default="[]"),
    Column("sent_at", DateTime(timezone=True)),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("thread_id", String(36), nullable=False),
    Column("has_attachments", Boolean, nullable=False, server_default="0"),
    Column("attachment_names", Text, nullable=False, server_default="[]"),
    Column("parts", Text, nullable=False, server_default="[]"),
    Column("malformed", Text),
    Column("record_id", String(36), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("index_state", String(16), nullable=False, server_default="pending"),
    Column("index_error", Text),
    Column("purged_at", DateTime(timezone=True)),
    Column("purge_record_id", String(36)),
    UniqueConstraint("tenant_id", "sha256", name="uq_archive_messages_content"),
    Index("ix_archive_messages_archived", "tenant_id", "archived_at", "id"),
    Index("ix_archive_messages_thread", "thread_id", "archived_at"),
    Index("ix_archive_messages_index_state", "index_state"),
)

archive_sightings = Table(
    "archive_sightings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("message_id", String(36), ForeignKey("archive_messages.id"), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("source_kind", String(16), nullable=False),
    Column("source_ref", Text, nullable=False, server_default=""),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("message_id", "source_kind", "source_ref", name="uq_archive_sightings_source"),
)

archive_threads = Table(
    "archive_threads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("subject_key", Text, nullable=False, server_default=""),
    Column("customer_address", String(320), nullable=False, server_default=""),
    Column("owner_agent_id", String(36)),
    Column("team_id", String(36)),
    Column("waiting_on", String(16), nullable=False),
    Column("message_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_message_at", DateTime(timezone=True), nullable=False),
    Column("last_inbound_at", DateTime(timezone=True)),
    Column("last_outbound_at", DateTime(timezone=True)),
    Index("ix_archive_threads_tenant", "tenant_id", "last_message_at"),
    Index("ix_archive_threads_owner", "tenant_id", "owner_agent_id"),
    Index("ix_archive_threads_subject", "tenant_id", "subject_key", "customer_address"),
)

archive_thread_keys = Table(
    "archive_thread_keys",
    metadata,
    Column("tenant_id", String(36), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("thread_id", String(36), nullable=False),
)
"""The Message-IDs (RFC 5322 msg-id, normalised, hashed when long) known to lead to a thread:
each archived message's own, and those it refers to (In-Reply-To, References)."""

archive_agents = Table(  # an agent's keys are tenant API keys with its agent_id
    "archive_agents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
    UniqueConstraint("tenant_id", "email", name="uq_archive_agents_email"),
)

archive_teams = Table(
    "archive_teams",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_archive_teams_name"),
)

archive_team_members = Table(
    "archive_team_members",
    metadata,
    Column("team_id", String(36), ForeignKey("archive_teams.id"), primary_key=True),
    Column("agent_id", String(36), ForeignKey("archive_agents.id"), primary_key=True),
)

archive_settings = Table(
    "archive_settings",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("retention_days", Integer),
    Column("own_domains", Text, nullable=False, server_default="[]"),
    Column("journal_token", String(64), nullable=False, unique=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

archive_notifications = Table(
    "archive_notifications",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("agent_id", String(36), ForeignKey("archive_agents.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("thread_id", String(36)),
    Column("message_id", String(36)),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("read_at", DateTime(timezone=True)),
    Index("ix_archive_notifications_agent", "agent_id", "read_at", "created_at"),
)
"""An agent's inbox in the console: a customer wrote again in a thread it owns, a thread was
assigned to it, an unanswered-mail alert."""

# -- the full-text index (search.py; migration 0021) ------------------------------------------

search_metadata = MetaData()
"""Not ``sealpost.schema``'s metadata: the index is built with each database's own DDL (an
FTS5 virtual table on SQLite, a table with a generated ``tsvector`` column and a GIN index on
PostgreSQL) that a dialect-neutral ``Table`` cannot describe.  This ``Table`` only lets the
queries name its columns."""

archive_search = Table(
    "archive_search",
    search_metadata,
    Column("message_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("files", Text, nullable=False),
)

UNMANAGED = (
    "archive_search",
    # FTS5's shadow tables (sqlite.org/fts5.html: "the virtual table and its shadow tables")
    "archive_search_data",
    "archive_search_idx",
    "archive_search_content",
    "archive_search_docsize",
    "archive_search_config",
    "ix_archive_messages_date",
)
"""Tables and indexes migration 0021 creates that ``metadata`` does not describe (the
migrations test leaves them out of its comparison).  ``ix_archive_messages_date``: PostgreSQL
only, on ``(tenant_id, coalesce(sent_at, archived_at), id)``, the order and the date window
of a search (the message's Date, else its archiving time): without it, a window with a common
word reads every message of the tenant.  An expression index, which SQLAlchemy does not
reflect on SQLite."""
