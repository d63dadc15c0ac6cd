"""Alembic environment: migrations run on the connection handed in by ``db.migrate``.

``target_metadata`` is the one ``MetaData`` every domain's tables are defined on: its naming
convention names the constraints that revisions create (``pk_<table>``...).  Autogenerate also
needs every table in it: import ``sealpost.schema`` first (``db`` never imports the domains).
"""

from __future__ import annotations

from alembic import context

from sealpost.db.metadata import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
