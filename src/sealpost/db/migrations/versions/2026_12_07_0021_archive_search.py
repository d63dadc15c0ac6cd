"""The archive's full-text index (issue 15, search): ``archive_search``.

SQLite: an FTS5 virtual table, ``tokenize = "unicode61 remove_diacritics 2"`` (case folded,
diacritics removed, also those of code points FTS5 learnt after 3.27).  PostgreSQL: the same
columns in a table with a generated ``tsvector`` column (the ``simple`` configuration over
``archive_unaccent``, an IMMUTABLE wrapper of the ``unaccent`` extension: a generated column
needs an immutable expression and ``unaccent(text)`` is only STABLE, as it reads its dictionary
through the search path) and a GIN index.  ``unaccent`` ships with PostgreSQL (contrib) and is
a trusted extension: a database owner may create it.

The metadata does not describe this table (``archive.tables.UNMANAGED``); messages
archived before this revision stay ``pending`` and the indexer takes them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import string

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


PUNCTUATION = "$p$" + string.punctuation + "$p$"
SPACES = "'" + " " * len(string.punctuation) + "'"
"""ASCII punctuation is a separator, as for FTS5's unicode61 and the words of a query: the
default parser of PostgreSQL would keep "condiciones-firmadas.pdf" or "ana.perez@acme.es"
whole (a file or an email token), and "firmadas" or "perez" would not find them."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute(
            "CREATE VIRTUAL TABLE archive_search USING fts5("
            "message_id UNINDEXED, tenant_id UNINDEXED, subject, body, files, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    schema = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'unaccent'"
        )
        .scalar_one()
    )
    where = '"' + str(schema).replace('"', '""') + '"'
    # schema-qualified: the function must not depend on the caller's search path
    op.execute(
        f"""
        CREATE FUNCTION archive_unaccent(text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
        AS $$ SELECT {where}.unaccent('{where}.unaccent'::regdictionary, $1) $$
        """
    )
    op.execute(
        f"""
        CREATE TABLE archive_search (
            message_id varchar(36) PRIMARY KEY REFERENCES archive_messages (id),
            tenant_id varchar(36) NOT NULL,
            subject text NOT NULL,
            body text NOT NULL,
            files text NOT NULL,
            document tsvector GENERATED ALWAYS AS (
                to_tsvector('simple'::regconfig, archive_unaccent(translate(
                    subject || ' ' || body || ' ' || files, {PUNCTUATION}, {SPACES}
                )))
            ) STORED
        )
        """
    )
    op.execute("CREATE INDEX ix_archive_search_document ON archive_search USING gin (document)")
    # the default target (100) keeps ~1,000 lexemes: any rarer word is estimated at 0.5 % of
    # the rows, and a page of 50 newest-first is then planned as a walk down the date index
    # that reads most of the archive for a rare word (seconds at 1M messages); 1,000 keeps
    # ~10,000 lexemes and the planner starts from the GIN index for rare words
    op.execute("ALTER TABLE archive_search ALTER COLUMN document SET STATISTICS 1000")
    op.execute(
        "CREATE INDEX ix_archive_messages_date ON archive_messages"
        " (tenant_id, coalesce(sent_at, archived_at), id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE archive_search")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION archive_unaccent(text)")
        op.execute("DROP INDEX ix_archive_messages_date")
