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

archive_mailboxes = Table(
    "archive_mailboxes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("host", String(253), nullable=False),
    Column("port", Integer, nullable=False),
    Column("tls", String(16), nullable=False),
    Column("username", String(320), nullable=False),
    Column("auth", String(16), nullable=False),
    # the password or OAuth2 access token, kept like a webhook's signing secret: it must be
    # usable to log in, so it is not hashed; the API never returns it
    Column("secret", Text, nullable=False),
    Column("folders", Text, nullable=False, server_default='["INBOX"]'),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("state", String(16), nullable=False, server_default="ok"),
    Column("last_error", Text),
    Column("failing_since", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("messages_fetched", BigInteger, nullable=False, server_default="0"),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_archive_mailboxes_name"),
    Index("ix_archive_mailboxes_due", "enabled", "next_attempt_at"),
)
"""IMAP mailboxes pulled into the archive, with the state of their last attempts (``ok``,
``failing``; ``disabled`` when not enabled) and the worker's lease."""

archive_mailbox_folders = Table(
    "archive_mailbox_folders",
    metadata,
    Column("mailbox_id", String(36), ForeignKey("archive_mailboxes.id"), primary_key=True),
    Column("folder", String(1000), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False, server_default="0"),
    Column("messages_fetched", BigInteger, nullable=False, server_default="0"),
    Column("synced_at", DateTime(timezone=True)),
)
"""Each folder's cursor (RFC 9051 §2.3.1.1): the UIDVALIDITY it was read under and the last
UID archived; a new UIDVALIDITY restarts the folder from UID 1."""
# -- unanswered-mail alerts (SLA) and scheduled sends (migration 0022) -------------------------

archive_sla_policies = Table(
    "archive_sla_policies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("scope", String(36), nullable=False),
    Column("team_id", String(36), ForeignKey("archive_teams.id")),
    Column("name", String(200), nullable=False, server_default=""),
    Column("first_reply_minutes", Integer, nullable=False),
    Column("reply_minutes", Integer, nullable=False),
    Column("warning_percent", Integer),
    Column("warning_before_minutes", Integer),
    Column("escalate_after_minutes", Integer),
    Column("reassign_after_minutes", Integer),
    Column("reassign_to", String(16), nullable=False, server_default="none"),
    Column("calendar", String(16)),
    Column("time_zone", String(64), nullable=False),
    Column("hours", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "scope", name="uq_archive_sla_policies_scope"),
)
"""A tenant's reply targets in business minutes (``scope`` is ``tenant`` for its default
policy, or the team's id for a team's own), with the service hours they count in."""

archive_sla_alerts = Table(
    "archive_sla_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("thread_id", String(36), ForeignKey("archive_threads.id"), nullable=False),
    Column("clock_start", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("policy_id", String(36), nullable=False),
    Column("record_id", String(36)),
    UniqueConstraint("thread_id", "clock_start", "kind", name="uq_archive_sla_alerts_once"),
    Index("ix_archive_sla_alerts_tenant", "tenant_id", "raised_at"),
)
"""Each alert raised (warning, breached, escalated, reassigned), once per thread and customer
message that started the clock (``clock_start``): the unique key is what makes it once."""

archive_scheduled_sends = Table(
    "archive_scheduled_sends",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("created_by_agent_id", String(36)),
    Column("sender", String(320), nullable=False),
    Column("sender_name", String(200)),
    Column("to_address", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text),
    Column("certified", Boolean, nullable=False),
    Column("pickup", Boolean, nullable=False),
    Column("requested_at", DateTime(timezone=True)),
    Column("send_at", DateTime(timezone=True), nullable=False),
    Column("hold", Text),
    Column("state", String(16), nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("communication_id", String(36)),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Index("ix_archive_scheduled_sends_due", "state", "send_at"),
    Index("ix_archive_scheduled_sends_tenant", "tenant_id", "created_at", "id"),
)
"""A message to send later (at ``send_at``, or held to the recipient's working hours, the
hold's terms in ``hold`` as JSON); claimed by the sequences' scheduler round."""


archive_holds = Table(
    "archive_holds",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("thread_id", String(36)),
    Column("address", String(320)),
    Column("query", Text),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(64), nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("placed_record_id", String(36), nullable=False),
    Column("released_at", DateTime(timezone=True)),
    Column("released_by", String(64)),
    Column("release_reason", Text),
    Column("released_record_id", String(36)),
    Index("ix_archive_holds_active", "tenant_id", "released_at"),
)
"""Legal holds: by thread, by customer address (its later messages too) or by a search query
(the matching messages frozen at placement in ``archive_hold_messages``).  ``placed_by`` and
``released_by`` are ``admin`` (the tenant's key) or ``agent:<id>``."""

archive_hold_messages = Table(
    "archive_hold_messages",
    metadata,
    Column("hold_id", String(36), ForeignKey("archive_holds.id"), primary_key=True),
    Column("message_id", String(36), ForeignKey("archive_messages.id"), primary_key=True),
)

archive_exports = Table(
    "archive_exports",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("thread_id", String(36)),
    Column("hold_id", String(36)),
    Column("query", Text),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("message_count", Integer, nullable=False),
    Column("pending_evidence", Integer, nullable=False, server_default="0"),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("record_id", String(36), nullable=False),
    Column("removed_at", DateTime(timezone=True)),
    Index("ix_archive_exports_tenant", "tenant_id", "created_at"),
)
"""Exports of a case: the ZIP is kept in the ``archive-exports`` blob namespace by
``sha256`` until ``removed_at`` (a copy kept for download, not the archive: it would outlive
its messages' retention); ``record_id`` is its ExportCreated record."""


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


archive_sla_scopes = Table(
    "archive_sla_scopes",
    metadata,
    Column("tenant_id", String(36), ForeignKey("tenants.id"), primary_key=True),
    Column("scope", String(36), primary_key=True),
    Column("first_created_at", DateTime(timezone=True), nullable=False),
)
"""When the tenant first had a policy of this scope (``tenant`` or a team's id): kept when
the policy is replaced, deleted and created again, so that the SLA clocks of mail older than
the policy count from this first creation, and re-creating a policy never erases a coming
breach."""
