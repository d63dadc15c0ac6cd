"""Alembic environment: migrations run on the connection handed in by ``db.migrate``.

Running migrations needs no table definitions (each revision spells out its own DDL);
autogenerate does, and gets ``sealpost.schema.metadata`` through the config's attributes so
that ``db`` never imports the domains above it.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
target_metadata = context.config.attributes.get("target_metadata")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
