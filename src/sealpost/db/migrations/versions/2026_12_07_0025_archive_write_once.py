"""The archive's write-once, closed where row triggers do not reach (issue 15).

Migration 0019's triggers refuse a ``DELETE`` or an ``UPDATE`` of an archived message row by
row.  Three ways around them are closed here:

- PostgreSQL's ``TRUNCATE`` fires no row trigger: a statement trigger refuses it on the
  archived messages and their sightings;
- SQLite's ``INSERT OR REPLACE`` deletes the conflicting row without firing its delete trigger
  (recursive triggers are off): an insert trigger refuses any row whose id, or whose tenant and
  digest, is already archived (the same ``IntegrityError`` the unique key gives, so a
  concurrent ingest of the same bytes still resolves to the one row);
- the thread a message belongs to never changes once archived (no code moves it; a row moved
  would leave one agent's sight for another's), and the sightings (which source saw a message,
  the IMAP UID or the journal's envelope) are write-once too.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_REFUSE_PG = """
CREATE FUNCTION archive_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the archive is write-once: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REFUSE_PG)
        for table in ("archive_messages", "archive_sightings"):
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION archive_refuse_change()"
            )
        op.execute(
            "CREATE TRIGGER archive_sightings_no_change BEFORE UPDATE OR DELETE "
            "ON archive_sightings FOR EACH ROW EXECUTE FUNCTION archive_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER archive_messages_thread_fixed BEFORE UPDATE OF thread_id "
            "ON archive_messages FOR EACH ROW WHEN (NEW.thread_id IS DISTINCT FROM OLD.thread_id) "
            "EXECUTE FUNCTION archive_refuse_change()"
        )
        return
    op.execute(
        "CREATE TRIGGER archive_messages_no_replace BEFORE INSERT ON archive_messages "
        "WHEN EXISTS (SELECT 1 FROM archive_messages WHERE id = NEW.id "
        "OR (tenant_id = NEW.tenant_id AND sha256 = NEW.sha256)) "
        "BEGIN SELECT RAISE(ABORT, 'the archive is write-once: this message is archived'); END"
    )
    op.execute(
        "CREATE TRIGGER archive_messages_thread_fixed BEFORE UPDATE OF thread_id "
        "ON archive_messages WHEN NEW.thread_id IS NOT OLD.thread_id "
        "BEGIN SELECT RAISE(ABORT, 'the archive is write-once: a message keeps its thread'); END"
    )
    op.execute(
        "CREATE TRIGGER archive_sightings_no_replace BEFORE INSERT ON archive_sightings "
        "WHEN EXISTS (SELECT 1 FROM archive_sightings WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'the archive is write-once: this sighting exists'); END"
    )
    op.execute(
        "CREATE TRIGGER archive_sightings_no_update BEFORE UPDATE ON archive_sightings "
        "BEGIN SELECT RAISE(ABORT, 'the archive is write-once: UPDATE on archive_sightings "
        "refused'); END"
    )
    op.execute(
        "CREATE TRIGGER archive_sightings_no_delete BEFORE DELETE ON archive_sightings "
        "BEGIN SELECT RAISE(ABORT, 'the archive is write-once: DELETE on archive_sightings "
        "refused'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER archive_messages_thread_fixed ON archive_messages")
        op.execute("DROP TRIGGER archive_sightings_no_change ON archive_sightings")
        for table in ("archive_messages", "archive_sightings"):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION archive_refuse_change()")
        return
    for name in (
        "archive_messages_no_replace",
        "archive_messages_thread_fixed",
        "archive_sightings_no_replace",
        "archive_sightings_no_update",
        "archive_sightings_no_delete",
    ):
        op.execute(f"DROP TRIGGER {name}")
